"""Device docs shipped with pyuse-gateway: one Markdown file per device kind."""

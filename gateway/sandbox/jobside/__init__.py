"""The job side of the sandbox: the zygote and the jobs it forks, with their lockdown and device handles.

Stdlib only: runs inside the sandbox, imports nothing from the gateway but its siblings. The zygote runs as
`python -I -S jobside/__main__.py`, where neither the gateway nor its dependencies are importable; the
modules here import each other relatively, so they load the same under the zygote's private package name and
as `gateway.sandbox.jobside` (the gateway reads handles.py to describe the handles in the prompt).

The protocol's other end stays outside: messages.py validates what a job sends with pydantic, which a job
cannot import, so the two sides share only the wire format (and its size limit, MAX_MESSAGE in both).
"""

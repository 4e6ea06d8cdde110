"""The gateway's configuration: a TOML file validated by pydantic, with environment overrides.

`sections` is the schema (what may be set, and what each key means); `loading` finds and reads the file, applies
the environment and reports every problem as one line naming the key, where it came from and what is expected.
"""

from gateway.config.loading import ConfigError, find_config_file, load_config
from gateway.config.sections import (
    AgentSection,
    ApiSection,
    AutomationEntry,
    AutomationTrigger,
    Config,
    DeviceEntry,
    DiscoverySection,
    GatewaySection,
    HomeAssistantSection,
    LLMSection,
    MqttSection,
    PolicyRule,
    PolicySection,
    SandboxSection,
    SkillsSection,
    SttSection,
    default_data_dir,
)

__all__ = ["AgentSection", "ApiSection", "AutomationEntry", "AutomationTrigger", "Config", "ConfigError",
           "DeviceEntry", "DiscoverySection", "GatewaySection", "HomeAssistantSection", "LLMSection", "MqttSection",
           "PolicyRule", "PolicySection", "SandboxSection", "SkillsSection", "SttSection", "default_data_dir",
           "find_config_file", "load_config"]

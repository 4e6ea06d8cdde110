"""A Zigbee2MQTT 2.1.3 bridge with Zigbee devices behind it: the exposes format (`exposes`), the devices
(`devices`), Home Assistant discovery (`discovery`), the bridge on MQTT (`bridge`) and the requests it answers
(`requests`)."""

from simulators.base import Room
from simulators.zigbee2mqtt.bridge import Group, Zigbee2MqttBridge
from simulators.zigbee2mqtt.devices import (
    Bulb,
    ClimateSensor,
    ContactSensor,
    ConverterError,
    DoorLock,
    MotionSensor,
    Thermostat,
    ZigbeeDevice,
)

__all__ = [
    "Bulb", "ClimateSensor", "ContactSensor", "ConverterError", "DoorLock", "Group", "MotionSensor", "Room",
    "Thermostat", "Zigbee2MqttBridge", "ZigbeeDevice",
]

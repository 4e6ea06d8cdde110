"""How people and programs reach the gateway: the HTTP API with its web page, and the MQTT command topic."""

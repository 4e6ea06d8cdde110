devices: Devices  # the devices exposed to this task, by id

class Devices(Mapping[str, Device]):
    def __getitem__(self, device_id: str) -> Device:
        """The handle for one device id (or its exact name or alias); KeyError naming close ids when the task has
        no such device."""
    def find(self, text: str | None = None, area: str | None = None, kind: str | None = None) -> list[Device]:
        """Devices whose id or name contains text (any case), in area, of kind."""

class Device:
    """Each kind's handle class adds the capability methods and readings of its doc (on(), temperature...)."""
    id: str
    name: str
    area: str
    kind: str
    state: dict  # last known state, as of the start of this turn
    api: dict  # what discovery reported (e.g. Home Assistant entities with their topics and payloads)
    aliases: list[str]  # other names people use for it
    online: bool  # as of the start of this turn

class HttpDevice(Device):
    def get(self, path: str, **params) -> Any:
        """GET a path on this device; returns parsed JSON, or text."""
    def post(self, path: str, json: Any = None) -> Any:
        """POST a JSON body to a path on this device; returns parsed JSON, or text."""
    def put(self, path: str, json: Any = None) -> Any:
        """PUT a JSON body to a path on this device; returns parsed JSON, or text."""
    def rpc(self, method: str, **params) -> Any:
        """JSON-RPC call; returns its result, raises DeviceError with the device's error."""

class MqttDevice(Device):
    base_topic: str
    topics: list[str]  # topic filters this device owns; only these can be used
    def publish(self, topic: str, payload: Any = "", qos: int = 0, retain: bool = False) -> None:
        """Publish; dicts and lists are sent as JSON."""
    def request(self, topic: str, payload: Any, reply_topic: str, timeout: float = 5) -> Any:
        """Publish, then return the next message on reply_topic (JSON decoded when it is JSON)."""
    def wait(self, topic: str, timeout: float = 5) -> Any:
        """Return the next message on topic (a retained one counts)."""

class SerialDevice(Device):
    def query(self, cmd: str, timeout: float = 2) -> str:
        """Send one command line and return the reply line."""
    def write(self, cmd: str) -> None:
        """Send one command line that has no reply."""

class DeviceError(Exception):
    """A device or its transport answered with an error."""

def final_answer(value: Any) -> NoReturn:
    """Finish the task; value is the answer to the user."""

def ask(question: str, choices: list[str] | None = None) -> str:
    """Ask the user; returns their answer (one of choices, if given). Raises NoAnswer (an Exception) when nobody
    answers."""

def sleep(seconds: float) -> None:
    """Pause; must end before this execution's time limit."""

def help(thing: Any = None) -> None:
    """Print what a device handle can do: its methods, readings and native calls."""

def doc(kind: str) -> None:
    """Print a device kind's native API, for what its methods do not cover."""

import logging

from gateway.listeners import Listeners


def test_every_listener_is_told_even_after_one_fails(caplog):
    told: list[str] = []
    listeners: Listeners[str] = Listeners("greeting")

    def broken(word: str) -> None:
        raise RuntimeError(word)

    listeners.append(broken)
    listeners.append(told.append)
    with caplog.at_level(logging.ERROR):
        listeners("hello")
    assert told == ["hello"]
    assert "greeting listener failed" in caplog.text


def test_a_listener_may_remove_itself_while_being_told():
    told: list[int] = []
    listeners: Listeners[int] = Listeners("number")

    def once(number: int) -> None:
        told.append(number)
        listeners.remove(once)

    listeners.append(once)
    listeners(1)
    listeners(2)
    listeners.remove(once)  # a second time is harmless
    assert told == [1] and once not in listeners

"""serving.http_messages.Reply: a response set on the loop thread is sent at once, to a waiter that came
before or after it, and one waiter's failure does not stop the others' answers."""
from __future__ import annotations

from serving.http_messages import Reply, Response


def test_a_reply_reaches_its_waiter_when_set_or_at_once_if_already_set():
    sent: list[tuple[str, int]] = []
    waiting, ready = Reply(), Reply()
    waiting.then(lambda response: sent.append(("waiting", response.status)))
    assert sent == [] and not waiting.done()
    waiting.set_result(Response(200, b"{}"))
    ready.set_result(Response(503, b"{}"))
    assert sent == [("waiting", 200)] and ready.done()
    ready.then(lambda response: sent.append(("ready", response.status)))
    assert sent == [("waiting", 200), ("ready", 503)]


def test_a_failing_waiter_is_logged_and_the_next_reply_is_still_sent(caplog):
    sent: list[int] = []
    failing, next_one = Reply(), Reply()

    def broken(response: Response) -> None:
        raise ConnectionResetError("the client went away")

    failing.then(broken)
    next_one.then(lambda response: sent.append(response.status))
    for reply in (failing, next_one):
        reply.set_result(Response(200, b"{}"))
    assert sent == [200]
    assert "unexpected error sending a response" in caplog.text and "ConnectionResetError" in caplog.text

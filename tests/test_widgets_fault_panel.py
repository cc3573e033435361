"""FaultPanel driven from Python as a learner would: pick, type, click Arm, read what it shows."""

from __future__ import annotations

import smtplib

import pytest

import smtplab
from smtplab.faults import SUGGESTED_REPLIES
from smtplab.widgets import FaultPanel
from tests.test_widgets import wait_until


def rcpt(server: smtplab.LabServer) -> tuple[int, bytes]:
    with smtplib.SMTP(*server.address, timeout=5) as client:
        client.ehlo()
        client.mail("alice@example.test")
        return client.rcpt("bob@example.test")


@pytest.fixture
def panel(lab_server):
    widget = FaultPanel(lab_server)
    try:
        yield widget
    finally:
        widget.close()


def test_arming_by_clicking_is_server_inject_and_the_client_sees_it(panel, lab_server):
    assert panel.stage.value == "RCPT" and panel.last.value == ""
    assert panel.action.label == f"reply {SUGGESTED_REPLIES['RCPT'][0]}"
    assert "no fault armed" in panel.armed_list.children[0].value
    assert panel.cancel_all_button.disabled
    panel.arm_button.click()
    (fault,) = lab_server.faults
    assert fault is panel.last_fault and fault.reply == "550 5.1.1 No such user here" and fault.times == 1
    assert "fault #1 at RCPT: reply 550 5.1.1 No such user here; once; fired 0× — armed" in (
        panel.armed_list.children[0].children[1].value
    )
    assert rcpt(lab_server) == (550, b"5.1.1 No such user here")
    wait_until(panel.history, "value", lambda text: "fault #1 fired at RCPT for 127.0.0.1:" in text)
    assert "no fault armed" in panel.armed_list.children[0].value, "used up: no longer listed"
    assert (
        "armed here last: fault #1 at RCPT: reply 550 5.1.1 No such user here; once; fired 1× — used up"
        in (panel.last.value)
    )
    assert rcpt(lab_server)[0] == 250


def test_each_stage_offers_its_own_replies_a_hang_up_and_a_late_answer(panel, lab_server):
    panel.stage.value = "end of data"
    labels = [label for label, _ in panel.action.options]
    assert labels == [f"reply {line}" for line in SUGGESTED_REPLIES["end of data"]] + [
        "hang up without a reply",
        "answer as usual, after the delay",
    ]
    panel.stage.value = "MAIL"
    panel.action.label = "hang up without a reply"
    panel.times.value = 0  # every time
    panel.arm_button.click()
    (fault,) = lab_server.faults
    assert (fault.stage, fault.disconnect, fault.times) == ("MAIL", True, None)
    with (
        pytest.raises(smtplib.SMTPServerDisconnected),
        smtplib.SMTP(*lab_server.address, timeout=5) as client,
    ):
        client.sendmail("alice@example.test", ["bob@example.test"], "Subject: x\r\n\r\nx\r\n")
    assert lab_server.faults == [fault], "every time: still armed"


def test_your_own_reply_wins_and_a_wrong_one_is_explained_in_the_panel(panel, lab_server):
    panel.custom.value = "451 4.7.1 Greylisted, come back in a minute"
    panel.arm_button.click()
    assert lab_server.faults[0].reply == "451 4.7.1 Greylisted, come back in a minute"
    panel.custom.value = "250 OK"
    panel.arm_button.click()
    assert "is not a refusal" in panel.error_line.value
    assert len(lab_server.faults) == 1
    panel.custom.value = ""
    panel.action.label = "answer as usual, after the delay"
    panel.arm_button.click()
    assert "must do something" in panel.error_line.value
    panel.delay.value = 0.5
    panel.arm_button.click()
    assert panel.error_line.value == "", "the next action clears the last error"
    assert lab_server.faults[1].action == "wait 0.5 s, then reply as usual"


def test_cancel_one_and_cancel_all(panel, lab_server):
    panel.arm_button.click()
    panel.stage.value = "DATA"
    panel.arm_button.click()
    first, second = lab_server.faults
    cancel_first = panel.armed_list.children[0].children[0]
    assert cancel_first.description == "Cancel"
    cancel_first.click()
    assert lab_server.faults == [second] and first.cancelled
    assert len(panel.armed_list.children) == 1
    assert not panel.cancel_all_button.disabled
    panel.cancel_all_button.click()
    assert lab_server.faults == [] and second.cancelled
    assert "no fault armed" in panel.armed_list.children[0].value


def test_faults_armed_in_code_show_in_the_panel(panel, lab_server):
    lab_server.inject("connect", reply=421)
    wait_until(panel.armed_list, "children", lambda rows: "fault #1 at connect" in rows[0].children[1].value)


def test_a_closed_panel_stops_listening(lab_server):
    panel = FaultPanel(lab_server)
    panel.close()
    lab_server.inject("RCPT", reply=550)
    assert "no fault armed" in panel._nothing_armed.value


def test_it_needs_a_lab_server():
    with pytest.raises(TypeError, match="FaultPanel arms faults on a LabServer"):
        FaultPanel("127.0.0.1:25")  # type: ignore[arg-type]

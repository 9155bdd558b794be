"""Text a model (or a file name) sends that UTF-8 cannot carry: the attempt and its refusal are
recorded anyway, escaped, and the audit chain still verifies.

End to end with the model stand-in through litellm: JSON's "\\ud800" decodes to a lone surrogate
in the tool arguments, the tool name or the reply's content.
"""

from __future__ import annotations

import json

from bot.slack import blocks
from runtime.jobs import JobState
from tests.kinds.code import test_agent
from tests.kinds.code.test_agent import MODEL, Rig, kinds, submit_and_run, tool_result
from tests.standins.model_standin import call, say

rig = test_agent.rig  # the fixture: stand-in, repository, policy and engines of one test


async def test_lone_surrogate_in_a_path_is_refused_on_the_record(rig: Rig):
    engine = await rig.engine()
    rig.standin.script(
        MODEL,
        call("write_file", path="/etc/x-\ud800", content="x"),
        say("could not write it"),
    )
    job = await submit_and_run(engine)

    told = tool_result(rig.standin.requests_for(MODEL)[1])
    assert told.startswith("refused: ") and "refused: refused" not in told, told
    assert "codec" not in told
    [refusal] = await kinds(engine, job.id, "tool.refused")
    assert refusal.data["tool"] == "fs.write"
    assert refusal.data["arguments"]["path"] == "/etc/x-\\ud800", "escaped, still readable"
    assert job.state is JobState.succeeded, job.result
    for args in (["audit", "verify"], ["show", job.job_id]):
        code, _, err = await rig.acp(*args)
        assert code == 0, (args, err)
    code, out, err = await rig.acp("audit", "export", "--job", job.job_id)
    assert code == 0, err
    exported = [json.loads(line) for line in out.splitlines()]
    [refused] = [e for e in exported if e["kind"] == "tool.refused"]
    assert refused["data"]["arguments"]["path"] == "/etc/x-\\ud800"


async def test_every_unencodable_attempt_is_recorded_and_the_job_goes_on(rig: Rig):
    engine = await rig.engine()
    rig.standin.script(
        MODEL,
        call("write_file", path="notes.txt", content="half a pair: \udc00"),
        call("run", command="echo \ud83d"),
        call("read\ud800file", path="README.md"),
        call("run", command="printf 'raw \\377 byte\\n'; touch \"$(printf 'bad-\\377')\""),
        call("list_dir", path="."),
        call("read_file", path="bad-\udcff"),
        say("done \ud800 with that"),
    )
    job = await submit_and_run(engine)

    reqs = rig.standin.requests_for(MODEL)
    assert len(reqs) == 7, "every request after an unencodable one was still sent"
    told = [tool_result(r) for r in reqs[1:]]
    assert told[0].startswith("refused: the argument 'content' is not valid text"), told[0]
    assert told[1].startswith("refused: the argument 'command' is not valid text"), told[1]
    assert told[2] == "error: there is no tool named 'read\\\\ud800file'", told[2]
    assert told[3].startswith("exit 0\nraw \ufffd byte"), "invalid UTF-8 output is U+FFFD"
    assert "bad-\\udcff" in told[4].splitlines(), "a file name of invalid UTF-8, escaped"
    assert told[5].startswith("refused: the argument 'path' is not valid text"), told[5]

    refused = await kinds(engine, job.id, "tool.refused")
    assert [r.data["tool"] for r in refused] == ["fs.write", "shell", "read\\ud800file", "fs.read"]
    assert refused[0].data["arguments"]["content"] == "half a pair: \\udc00"
    assert refused[1].data["arguments"]["command"] == "echo \\ud83d"
    [finished] = await kinds(engine, job.id, "agent.finished")
    assert finished.data["summary"] == "done \\ud800 with that"
    assert not (rig.repo / "notes.txt").exists()
    transcript = next(a for a in job.artifacts if a.name == "transcript.json")
    assert "done \\\\ud800 with that" in engine.artifacts.read(transcript.sha256).decode()
    assert await engine.verify_audit()
    code, out, err = await rig.acp("audit", "verify")
    assert code == 0 and "chain intact" in out, err
    code, out, err = await rig.acp("show", job.job_id)
    assert code == 0, err
    # What Slack is sent of such a job encodes, whatever the job holds.
    card = blocks.job_card(job.model_copy(update={"spec": job.spec.model_copy(
        update={"instruction": "fix \ud800 it"})}), {})  # fmt: skip
    payload = json.dumps(card, ensure_ascii=False).encode()  # as the Slack client sends it
    assert "fix \\ud800 it" in json.loads(payload)[1]["text"]["text"]

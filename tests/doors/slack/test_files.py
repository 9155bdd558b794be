"""Files in: a CSV, XLSX, DOCX or Markdown file attached to a Slack request (a mention, a DM,
or a message in the thread above) becomes an input of the doc job, stored by hash on the chain,
placed at inputs/<name> for its steps, and listed in its review. Over the size limit, of the
wrong type, or on a request that is not a doc job: refused where it was asked, and no job.

`acp serve` in HTTP mode against the Slack stand-in, which serves the files' bytes at their
url_private_download only for the bot token (anything else gets Slack's sign-in page).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
from pathlib import Path

import pytest
import yaml
from docx import Document as WordDocument
from openpyxl import Workbook
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.files import SlackFile, fetched
from runtime.doc_formats import DocumentError, read_as
from runtime.errors import BadRequest
from tests.doors.slack.rig import ALICE, BOB, CHANNEL, SECRET, SlackRig, http_env
from tests.standins.slack_signing import event_callback, post_signed
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import ROOT, acp

BOT = "U0BOT"
CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INCIDENTS = (
    b"id,opened,service,severity,minutes,summary\n"
    b"INC-9001,2026-12-01,billing,SEV1,42,Zorblax queue stalled\n"
    b"INC-9002,2026-12-02,billing,SEV3,5,Slow invoice page\n"
)
WEEKLY_FROM_INPUT = (
    "doc reports: weekly summary "
    "`template templates/weekly.md.j2 out/weekly.md inputs/incidents.csv`"
)
_ids = itertools.count(1)


def share(
    standin: SlackStandIn, name: str, content: bytes, *, user: str, mimetype: str, **extra
) -> dict:
    """A file a person shared in the stand-in's workspace: the object Slack puts on messages."""
    record = {"id": f"F0FILE{next(_ids):04d}", "filename": name, "content": content,
              "user": user, "mimetype": mimetype, **extra}  # fmt: skip
    standin.files.append(record)
    return standin._m_files_info({"file": record["id"]})["file"]


def with_files(message: dict, files: list[dict], kind: str = "app_mention") -> dict:
    """The event Slack sends for a message of the stand-in's that has files on it."""
    message["files"] = files
    event = {"type": kind, **{k: message[k] for k in ("user", "text", "ts", "channel")}}
    if message.get("thread_ts"):
        event["thread_ts"] = message["thread_ts"]
    return {**event, "files": files}


def workbook() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for row in [("team", "q1", "q2"), ("payments", 40, 42), ("ledger", 10, 12), ("infra", 7, 9)]:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def policy_with(folder: Path, **limits: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "policies").glob("*.yml"):
        (folder / path.name).write_text(path.read_text())
    policy = yaml.safe_load((folder / "default.yml").read_text())
    policy.setdefault("limits", {}).update(limits)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


async def deliver(rig: SlackRig, event: dict) -> None:
    status, _, took = await post_signed(
        rig.url, event_callback(event), SECRET, content_type="application/json"
    )
    assert status == 200 and took < 3


def events_of(env: dict[str, str], *args: str) -> list[dict]:
    export = acp(env, "audit", "export", *args).stdout
    return [json.loads(line) for line in export.splitlines() if line.strip()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def standin():
    standin = await SlackStandIn().start()
    try:
        yield standin
    finally:
        await standin.stop()


async def started(tmp_path: Path, standin: SlackStandIn, **env: str) -> SlackRig:
    rig = SlackRig(http_env(tmp_path, standin, **env), standin)
    await asyncio.to_thread(rig.start)
    return rig


# --- a file attached to the request ----------------------------------------------------------


async def test_a_csv_attached_to_a_doc_mention_is_the_jobs_input_on_the_chain_and_in_review(
    tmp_path: Path, standin: SlackStandIn
):
    rig = await started(tmp_path, standin)
    try:
        file = share(standin, "incidents.csv", INCIDENTS, user=ALICE, mimetype=CSV_MIME)
        mention = standin.add_message(CHANNEL, f"<@{BOT}> {WEEKLY_FROM_INPUT}", user=ALICE)
        await deliver(rig, with_files(mention, [file]))

        job = await rig.wait_state({"awaiting_approval", "failed", "denied"})
        assert job["state"] == "awaiting_approval", job["result"]
        # Downloaded once, with the bot's token.
        (download,) = standin.calls_to("files.download")
        assert download.headers["Authorization"] == f"Bearer {standin.bot_token}"
        # The exact bytes, by hash: the artifact and the input.attached event on the chain.
        ref = next(a for a in job["artifacts"] if a["name"] == "input/incidents.csv")
        assert ref["sha256"] == sha256(INCIDENTS) and ref["size"] == len(INCIDENTS)
        assert ref["media_type"] == CSV_MIME
        events = events_of(rig.env, "--job", "J-1")
        (attached,) = [e for e in events if e["kind"] == "input.attached"]
        assert attached["artifacts"] == [sha256(INCIDENTS)]
        assert attached["data"]["sha256"] == sha256(INCIDENTS)
        assert attached["data"]["bytes"] == len(INCIDENTS)
        assert attached["data"]["read_as"] == {"format": "csv", "rows": 3, "columns": 6}
        assert attached["data"]["source"] == f"slack file {file['id']} from alice ({ALICE})"
        assert acp(rig.env, "audit", "verify").returncode == 0
        # The model is told which inputs it has (as context, untrusted).
        assert any(a["name"] == "context/inputs.txt" for a in job["artifacts"])

        # The template step read the attached incidents, not the repository's own log.
        review = acp(rig.env, "artifact", "J-1", "document-diff.txt", "-o", "-").stdout
        assert "2 incidents, 47 minutes of impact" in review
        assert "Zorblax queue stalled" in review and "INC-1001" not in review
        # The review lists the input next to the document it made; the input itself is not
        # part of the change (only out/weekly.md is).
        size, digest = len(INCIDENTS), ref["sha256"][:12]
        listed = f"inputs/incidents.csv: CSV, 3 rows × 6 columns, {size} bytes, sha256 {digest}"
        assert f"{listed}, slack file {file['id']} from alice" in review
        pending = job["pending_action"]
        assert pending["stat"]["files"] == ["out/weekly.md"]
        assert any(d.startswith("input inputs/incidents.csv") for d in pending["documents"])
    finally:
        await asyncio.to_thread(rig.stop)


async def test_an_xlsx_shared_in_the_thread_above_the_mention_is_picked_up(
    tmp_path: Path, standin: SlackStandIn
):
    rig = await started(tmp_path, standin)
    try:
        book = workbook()
        parent = standin.add_message(CHANNEL, "Q1/Q2 budget for the weekly report", user=BOB)
        root = parent["ts"]
        shared = standin.add_message(CHANNEL, "here it is", user=BOB, thread_ts=root)
        shared["files"] = [share(standin, "Budget Q2.xlsx", book, user=BOB, mimetype=XLSX_MIME)]
        # The app's own posts in the thread (a published document) are not inputs.
        own = standin.add_message(CHANNEL, "J-0 published", user=BOT, thread_ts=root)
        own.update(bot_id=standin.bot_id, files=[
            share(standin, "weekly.md", b"# old report\n", user=BOT, mimetype="text/markdown")
        ])  # fmt: skip
        request = (
            "doc reports: weekly `template templates/weekly.md.j2 out/weekly.md incidents.csv`"
        )
        mention = standin.add_message(CHANNEL, f"<@{BOT}> {request}", user=ALICE, thread_ts=root)
        await deliver(rig, with_files(mention, []))

        job = await rig.wait_state({"awaiting_approval", "failed", "denied"})
        assert job["state"] == "awaiting_approval", job["result"]
        inputs = [a for a in job["artifacts"] if a["name"].startswith("input/")]
        assert [(a["name"], a["sha256"]) for a in inputs] == [
            ("input/Budget-Q2.xlsx", sha256(book))
        ]
        (attached,) = [
            e for e in events_of(rig.env, "--job", "J-1") if e["kind"] == "input.attached"
        ]
        assert attached["data"]["filename"] == "Budget Q2.xlsx"
        assert attached["data"]["read_as"]["sheets"] == [
            {"name": "Budget", "rows": 4, "columns": 3}
        ]
        assert attached["data"]["source"].endswith(f"from bob ({BOB})")
        review = acp(rig.env, "artifact", "J-1", "document-diff.txt", "-o", "-").stdout
        assert "inputs/Budget-Q2.xlsx: XLSX workbook, 1 sheet: Budget 4 rows × 3 columns" in review
        told = acp(rig.env, "artifact", "J-1", "context/inputs.txt", "-o", "-").stdout
        assert "inputs/Budget-Q2.xlsx" in told and "weekly.md" not in told
    finally:
        await asyncio.to_thread(rig.stop)


# --- refused: no job -------------------------------------------------------------------------


async def test_files_over_the_limit_of_the_wrong_type_or_on_a_non_doc_request_are_refused(
    tmp_path: Path, standin: SlackStandIn
):
    folder = policy_with(tmp_path / "p", doc_max_bytes=64 * 1024)
    rig = await started(tmp_path, standin, ACP_POLICY_DIR=str(folder))
    big = b"id,summary\n" + b"INC-1,padding padding padding padding\n" * 2700  # 100+ KB

    async def refused(file: dict, words: str, request: str = WEEKLY_FROM_INPUT) -> dict:
        root = standin.add_message(CHANNEL, "thread", user=ALICE)["ts"]
        mention = standin.add_message(CHANNEL, f"<@{BOT}> {request}", user=ALICE, thread_ts=root)
        await deliver(rig, with_files(mention, [file]))
        said = await rig.ephemeral_with(words)
        assert said["user"] == ALICE and said["thread_ts"] == root
        return said

    try:
        # Over the limit by the size Slack declares: refused before a byte is downloaded.
        over = share(standin, "big.csv", big, user=ALICE, mimetype=CSV_MIME)
        await refused(over, "big.csv is 100.2 KB, over the 64.0 KB limit for documents")
        # Declared small, but the download runs past the limit: refused while downloading.
        lying = share(standin, "lying.csv", big, user=ALICE, mimetype=CSV_MIME, size=900)
        await refused(lying, "lying.csv is 100.2 KB, over the 64.0 KB limit for documents")
        assert [c.args["file"] for c in standin.calls_to("files.download")] == [lying["id"]]
        # Not one of the four formats, by its name: refused before downloading.
        pdf = share(standin, "budget.pdf", b"%PDF-1.7\n", user=ALICE, mimetype="application/pdf")
        await refused(pdf, "budget.pdf is not a CSV, XLSX, DOCX or Markdown file; attach one")
        # A .csv whose bytes are a workbook: refused by its content.
        zipped = share(standin, "data.csv", workbook(), user=ALICE, mimetype=CSV_MIME)
        await refused(zipped, "data.csv is not a CSV file: it is a zip file")
        # A .csv that is a PDF inside.
        fake = share(standin, "report.csv", b"%PDF-1.4 all ascii\n", user=ALICE, mimetype=CSV_MIME)
        await refused(fake, "report.csv is not a CSV file: it looks like a PDF")
        # A file on a request that is not a doc job: said so.
        csv = share(standin, "incidents.csv", INCIDENTS, user=ALICE, mimetype=CSV_MIME)
        await refused(csv, "files are inputs of doc jobs and this is a code job",
                      request="code demo: run `ls`")  # fmt: skip

        assert json.loads(acp(rig.env, "jobs", "--json").stdout) == []
        kinds = [e["data"] for e in events_of(rig.env) if e["kind"] == "request.refused"]
        assert [k["files"] for k in kinds] == [
            ["big.csv"], ["lying.csv"], ["budget.pdf"], ["data.csv"], ["report.csv"],
            ["incidents.csv"],
        ]  # fmt: skip
        assert acp(rig.env, "audit", "verify").returncode == 0
    finally:
        await asyncio.to_thread(rig.stop)


# --- a direct message with a file -------------------------------------------------------------


async def test_a_direct_message_with_a_file_is_a_doc_request_with_that_input(
    tmp_path: Path, standin: SlackStandIn
):
    rig = await started(tmp_path, standin)
    try:
        dm = standin.dm_channel(ALICE)
        file = share(standin, "incidents.csv", INCIDENTS, user=ALICE, mimetype=CSV_MIME)
        # Only the file's id, as Slack sends some file_share events: described by files.info.
        thin = {"id": file["id"], "file_access": "check_file_info"}
        message = standin.add_message(dm, WEEKLY_FROM_INPUT, user=ALICE)
        event = {**with_files(message, [thin], kind="message"), "channel_type": "im",
                 "subtype": "file_share"}  # fmt: skip
        await deliver(rig, event)
        job = await rig.wait_state({"awaiting_approval", "failed", "denied"})
        assert job["state"] == "awaiting_approval", job["result"]
        assert standin.calls_to("files.info")
        ref = next(a for a in job["artifacts"] if a["name"] == "input/incidents.csv")
        assert ref["sha256"] == sha256(INCIDENTS)
        # A file with no request in the DM: told how to ask, and no job.
        alone = standin.add_message(dm, "", user=ALICE)
        event = {**with_files(alone, [file], kind="message"), "channel_type": "im",
                 "subtype": "file_share"}  # fmt: skip
        await deliver(rig, event)
        await rig.ephemeral_with("incidents.csv came without a request")
        assert [j["id"] for j in json.loads(acp(rig.env, "jobs", "--json").stdout)] == [1]
    finally:
        await asyncio.to_thread(rig.stop)


# --- the download itself ----------------------------------------------------------------------


async def test_a_download_slack_answers_with_its_sign_in_page_is_refused(standin: SlackStandIn):
    file = SlackFile.model_validate(
        share(standin, "incidents.csv", INCIDENTS, user=ALICE, mimetype=CSV_MIME)
    )
    wrong = AsyncWebClient(token="xoxb-not-this-workspace", base_url=standin.base_url)
    with pytest.raises(BadRequest, match=r"sign-in page instead of incidents\.csv"):
        await fetched(wrong, [file], max_bytes=1 << 20, source=lambda f: "test")
    right = AsyncWebClient(token=standin.bot_token, base_url=standin.base_url)
    (got,) = await fetched(right, [file], max_bytes=1 << 20, source=lambda f: "test")
    assert got.content == INCIDENTS and got.media_type == CSV_MIME


def test_inputs_are_read_as_what_they_are_and_refused_for_what_they_are_not():
    assert read_as("budget.xlsx", workbook())["sheets"][0]["rows"] == 4
    with pytest.raises(DocumentError, match="is not an XLSX workbook: it is not a zip file"):
        read_as("budget.xlsx", INCIDENTS)
    with pytest.raises(DocumentError, match="not UTF-8 text"):
        read_as("latin1.csv", "café,1\n".encode("latin-1"))
    word = io.BytesIO()
    document = WordDocument()
    document.add_heading("Runbook", level=1)
    document.add_paragraph("Page the on-call engineer.")
    document.save(word)
    assert read_as("runbook.docx", word.getvalue())["paragraphs"] == 2
    with pytest.raises(DocumentError, match="is a DOCX document, not an XLSX workbook"):
        read_as("budget.xlsx", word.getvalue())
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # an .xls renamed .xlsx
    with pytest.raises(DocumentError, match="old binary Office file"):
        read_as("budget.xlsx", ole)
    assert read_as("excel.csv", "\ufeffa,b\r\n1,2\r\n".encode())["rows"] == 2  # Excel's CSV UTF-8


def test_a_request_takes_its_own_files_then_the_newest_shared_above_up_to_the_limit():
    from bot.slack.files import chosen, files_on

    def message(*ids: str, bot: bool = False) -> dict:
        files = [{"id": i, "name": f"{i}.csv", "url_private_download": "u"} for i in ids]
        return {"files": files, **({"bot_id": "B0BOT"} if bot else {})}

    own = files_on(message("F1"))
    above = [message("F2"), message("F3", "F4"), message("F9", bot=True)]
    assert [f.id for f in chosen(own, above, 3)] == ["F1", "F3", "F4"]
    assert [f.id for f in chosen([], above, 5)] == ["F3", "F4", "F2"]
    with pytest.raises(BadRequest, match="2 files are attached; a request takes at most 1"):
        chosen(files_on(message("F1", "F2")), [], 1)
    deleted = {"files": [{"id": "F5", "mode": "tombstone"}]}
    assert files_on(deleted) == []

"""A user's own folder: `make index` builds it, RAG_INDEX_DIR serves it, answers come from it."""

import subprocess

import pytest

from tests.documents import docx_bytes, pdf_bytes
from tests.service.conftest import start_architecture
from tests.support import ROOT, child_env

pytestmark = pytest.mark.slow

DOCS = {
    "handbook/kettles.md": "# Kettle policy\n\nThe Brindlewood office kettle is descaled every Thursday by Oskar Vell. "
    "It holds 1.7 litres.",
    "handbook/parking.md": "# Parking\n\nStaff park in the Quillon Street garage, level 3. Permits cost 14 euros a month.",
    "notes/wifi.txt": "The guest wifi network is called BRINDLE-GUEST and its password changes every Monday.",
}


def make(*args, **env):
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args], env=child_env(**env), capture_output=True, text=True, timeout=600
    )


def test_index_and_serve_own_documents(tmp_path):
    docs = tmp_path / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    (docs / "handbook" / "canteen.pdf").write_bytes(
        pdf_bytes(
            ["Canteen.\nThe canteen opens at 11:30.", "Canteen prices.\nThe Brindlewood canteen soup costs 3 euros."]
        )
    )
    (docs / "notes" / "printers.docx").write_bytes(docx_bytes("Printers", ["The colour printer is on floor 2."]))
    result = make("index", f"DOCS={docs}", f"INDEX={tmp_path / 'index'}")
    assert result.returncode == 0, result.stderr
    assert "5 documents" in result.stdout + result.stderr
    again = make("index", f"DOCS={docs}", f"INDEX={tmp_path / 'index'}")
    assert "is up to date" in again.stderr and "embedding 0 chunks" in again.stderr

    # The microservices: a PDF's page must survive the vector service's JSON and the orchestrator's.
    service = start_architecture("microservicos", tmp_path, tmp_path / "index")
    try:
        service.wait_ready()
        body = service.invoke({"query": "Who descales the office kettle?", "top_k": 1, "max_new_tokens": 24}).json()
        assert body["sources"][0]["source"] == "handbook/kettles.md"
        assert "Oskar" in body["answer"] or "Vell" in body["answer"], body["answer"]
        body = service.invoke({"query": "How much does a parking permit cost?", "top_k": 1}).json()
        assert [s["source"] for s in body["sources"]] == ["handbook/parking.md"] and "page" not in body["sources"][0]
        body = service.invoke({"query": "How much is the soup in the canteen?", "top_k": 1, "max_new_tokens": 8}).json()
        assert [(s["source"], s["page"]) for s in body["sources"]] == [("handbook/canteen.pdf", 2)]
    finally:
        service.server.stop()


def test_index_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = make("index", f"DOCS={tmp_path / 'empty'}", f"INDEX={tmp_path / 'index'}")
    assert result.returncode != 0
    assert "holds no .md, .txt, .html, .pdf or .docx files" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index").exists()


def test_wrong_setting_stops_startup_naming_it(tmp_path):
    service = start_architecture("monolito", tmp_path, tmp_path, RAG_TOP_K="lots")
    code = service.server.proc.wait(timeout=60)
    service.server.stop()
    assert code != 0 and "RAG_TOP_K" in service.server.log()

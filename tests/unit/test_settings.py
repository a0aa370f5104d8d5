"""Settings that the entrypoints and the deploy rely on: values validated before they reach a shell."""

import pytest

from rag.errors import ConfigError
from rag.settings import Settings, main


@pytest.mark.parametrize(
    "host, bind",
    [("127.0.0.1", "127.0.0.1:8080"), ("::1", "[::1]:8080"), ("localhost", "localhost:8080"), ("", "0.0.0.0:8080")],
)
def test_public_bind(host, bind):
    assert Settings.from_env({"RAG_BIND_HOST": host}).public_bind == bind


@pytest.mark.parametrize(
    "env, name",
    [
        ({"RAG_BIND_HOST": "0.0.0.0:1"}, "RAG_BIND_HOST"),
        ({"RAG_STARTUP_TIMEOUT": "1+1"}, "RAG_STARTUP_TIMEOUT"),
        ({"RAG_VECTOR_URL": "http://127.0.0.1:port"}, "RAG_VECTOR_URL"),
        ({"RAG_LLM_URL": "http://:5002"}, "RAG_LLM_URL"),
        ({"RAG_INSTANCE_TOKEN": "a b"}, "RAG_INSTANCE_TOKEN"),
    ],
)
def test_wrong_values_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_ports_come_from_the_urls():
    settings = Settings.from_env({"RAG_VECTOR_URL": "http://127.0.0.1:7001", "RAG_LLM_URL": "http://127.0.0.1"})
    assert (settings.vector_port, settings.llm_port) == (7001, 80)


def test_get_prints_only_validated_values(monkeypatch, capsys):
    monkeypatch.setenv("RAG_STARTUP_TIMEOUT", "42")
    assert main(["--get", "startup_timeout_s", "vector_port"]) == 0
    assert capsys.readouterr().out == "42 5001\n"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--get", "instance_token"], "invalid choice: 'instance_token'"),  # not a validated shell value
        (["--get"], "expected at least one argument"),
        (["public_bind"], "unrecognized arguments: public_bind"),
    ],
)
def test_bad_use_is_a_usage_error(argv, says, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("usage: python -m rag.settings") and says in err


def test_a_wrong_value_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("RAG_STARTUP_TIMEOUT", "1+1")
    assert main(["--get", "startup_timeout_s"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("configuration error: RAG_STARTUP_TIMEOUT") and err.count("\n") == 1

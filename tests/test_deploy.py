"""The deployment files (deploy/) and docs/production.md stay true to the code: the `leadbot`
commands they name parse with the real CLI, the settings they name exist, the image and the
units run as an unprivileged user, and systemd accepts the units. No Docker, no network."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
DOC = ROOT / "docs" / "production.md"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
NGINX = DEPLOY / "nginx.conf"
UNIT_FILES = ("leadbot-migrate.service", "leadbot-web@.service", "leadbot-worker@.service")
# Instances to verify: a template alone is not checked for what its %i makes.
UNIT_INSTANCES = (
    "leadbot-migrate.service",
    "leadbot-web@8081.service",
    "leadbot-worker@9101.service",
)

# Environment variables these files may name that are not Leadbot settings.
NOT_LEADBOT = frozenset(
    {
        "POSTGRES_PASSWORD",  # the postgres image's and the compose file's
        "POSTGRES_USER",
        "POSTGRES_DB",
        "PYTHON_VERSION",  # the Dockerfile's build argument
        "PATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_CACHE_DIR",
        "MPLCONFIGDIR",  # matplotlib's cache
    }
)
# Upper-case words with an underscore that are not variables.
NOT_VARIABLES = frozenset({"SIGTERM", "SIGINT", "AF_INET", "AF_INET6", "AF_UNIX"})
SHELL_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ">", ">>", "<", "(", ")"})
# Options whose value may be the word `leadbot` (a user, a group, a database, an image tag).
VALUE_OPTIONS = re.compile(r"^-[a-zA-Z]$|^--(user|group|gid|uid|dbname|username|tag)$")


# --- where the commands and variables are ---------------------------------------------------


def deploy_files() -> list[Path]:
    return [*(UNITS / name for name in UNIT_FILES), DOCKERFILE, COMPOSE, NGINX]


def markdown_code(text: str) -> Iterator[str]:
    """The lines of fenced shell blocks and every inline code span of a Markdown text."""
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence is not None:
            if fence in ("sh", "bash", "console", "shell"):
                yield line
            continue
        yield from re.findall(r"`([^`]+)`", line)


def comment_code(path: Path) -> Iterator[str]:
    """Commands in a deploy file's comments: inline code spans, and command lines indented
    under a comment (`#   systemctl enable ...`)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            continue
        comment = stripped.lstrip("#")
        yield from re.findall(r"`([^`]+)`", comment)
        if comment.startswith("  ") and "`" not in comment:
            yield comment.strip()


def unit_directives(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def leadbot_services() -> dict[str, dict]:
    services = compose_file()["services"]
    return {
        name: service
        for name, service in services.items()
        if str(service.get("image", "")).startswith("leadbot") or "build" in service
    }


def leadbot_args(command: str) -> Iterator[list[str]]:
    """The arguments of each `leadbot` run in a shell command line: after a word that is
    `leadbot` or a path to it (`.../bin/leadbot`), unless it is an option's value or the last
    word (a user, a database, an image name)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote in prose: not a command
        return
    for index, word in enumerate(words):
        if word != "leadbot" and not word.endswith("/bin/leadbot"):
            continue
        if index + 1 == len(words) or words[index + 1] in SHELL_OPERATORS:
            continue
        if index > 0 and VALUE_OPTIONS.match(words[index - 1]):
            continue
        args = []
        for arg in words[index + 1 :]:
            if arg in SHELL_OPERATORS:
                break
            args.append(arg)
        yield args


def commands_in_deploy_and_doc() -> list[tuple[str, list[str]]]:
    """Every `leadbot ...` these files run or tell someone to run, as (where, arguments)."""
    found: list[tuple[str, list[str]]] = []
    for line in markdown_code(DOC.read_text(encoding="utf-8")):
        found += [(f"{DOC.name}: {line.strip()}", args) for args in leadbot_args(line)]
    for path in deploy_files():
        for code in comment_code(path):
            found += [(f"{path.name}: {code}", args) for args in leadbot_args(code)]
    for name in UNIT_FILES:
        for key, value in unit_directives(UNITS / name):
            if key.startswith("Exec"):
                found += [(f"{name}: {value}", args) for args in leadbot_args(value)]
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["leadbot"]
    found.append(("Dockerfile: CMD", json.loads(instructions["CMD"])))
    for name, service in leadbot_services().items():
        if "command" in service:
            found.append((f"compose.yaml: {name}", list(service["command"])))
    return found


def variables_named() -> dict[str, set[str]]:
    """Each environment variable the deploy files and the doc name, with where."""
    named: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        named.setdefault(name, set()).add(where)

    for path in [*deploy_files(), DOC]:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"(?<![A-Za-z0-9_$.-])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", text):
            if name not in NOT_VARIABLES:
                add(name, path.name)
    # Names without an underscore, where they are set.
    for name in UNIT_FILES:
        for key, value in unit_directives(UNITS / name):
            if key == "Environment":
                add(value.split("=", 1)[0], name)
            if key.startswith("Exec"):
                for word in shlex.split(value):
                    if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", word):
                        add(word.split("=", 1)[0], name)
    for instruction, arguments in dockerfile_instructions():
        if instruction in ("ENV", "ARG"):
            for word in shlex.split(arguments):
                add(word.split("=", 1)[0], DOCKERFILE.name)
    compose = compose_file()
    for key, block in compose.items():
        if key.startswith("x-") and isinstance(block, dict) and "build" not in block:
            for name in block:
                add(name, COMPOSE.name)
    for service in compose["services"].values():
        for name in service.get("environment") or {}:
            add(name, COMPOSE.name)
    return named


def settings_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


# --- the tests ------------------------------------------------------------------------------


def test_every_leadbot_command_parses_with_the_real_cli() -> None:
    commands = commands_in_deploy_and_doc()
    roles = {tuple(args) for _, args in commands if args[:1] == ["run"]}
    # The scan finds what is there: the roles, the migration, the checks.
    assert {("run", "--role", "web"), ("run", "--role", "worker")} <= roles
    assert any(args == ["db", "upgrade"] for _, args in commands)
    wrong = []
    for where, args in commands:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                _parser().parse_args(args)
        except SystemExit:
            wrong.append(f"{where}\n    leadbot {shlex.join(args)}: {stderr.getvalue().strip()}")
    assert not wrong, "commands the CLI refuses:\n" + "\n".join(wrong)


def test_every_variable_named_is_a_setting_or_allowed() -> None:
    known = settings_in_env_example()
    named = variables_named()
    assert {"DATABASE_URL", "REDIS_URL", "HTTP_PORT", "WEBHOOK_SECRET"} <= named.keys()
    unknown = {
        name: sorted(where)
        for name, where in named.items()
        if name not in known and name not in NOT_LEADBOT
    }
    assert not unknown, f"not in .env.example (nor allowed as not Leadbot's): {unknown}"


def test_dockerfile_builds_in_stages_and_runs_unprivileged() -> None:
    instructions = dockerfile_instructions()
    stages = [index for index, (name, _) in enumerate(instructions) if name == "FROM"]
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    entrypoint = [index for index, (name, _) in enumerate(instructions) if name == "ENTRYPOINT"]
    assert entrypoint, 'ENTRYPOINT ["leadbot"]'
    users = [
        arguments.split()[0]
        for index, (name, arguments) in enumerate(instructions)
        if name == "USER" and stages[-1] < index < entrypoint[-1]
    ]
    assert users, "a USER in the runtime stage, before the ENTRYPOINT"
    assert users[-1].split(":")[0] not in ("root", "0"), f"runs as {users[-1]}"
    assert any(name == "HEALTHCHECK" and "/healthz" in args for name, args in instructions)


def test_units_run_as_an_unprivileged_user() -> None:
    for name in UNIT_FILES:
        directives = unit_directives(UNITS / name)
        users = [value for key, value in directives if key == "User"]
        assert users, f"{name}: no User="
        assert users[-1] not in ("", "root", "0"), f"{name}: User={users[-1]}"
        assert ("EnvironmentFile", "/etc/leadbot/leadbot.env") in directives, name


def test_compose_waits_for_the_migration_and_healthy_services() -> None:
    services = compose_file()["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name], name


def test_the_proxy_never_exposes_readyz_or_metrics() -> None:
    text = NGINX.read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    locations = re.findall(r"location\s+(=\s*|\^~\s*)?(\S+)\s*\{([^}]*)\}", code)
    passed = {path for _, path, body in locations if "proxy_pass" in body}
    assert {"/telegram/webhook", "/vk/callback", "/api/", "/r/"} <= passed
    assert not any(
        path == "/" or path.startswith(("/readyz", "/metrics", "/healthz")) for path in passed
    ), f"passed to the bot: {sorted(passed)}"


def verify_output(folder: Path, unit: str) -> list[str]:
    result = subprocess.run(
        ["systemd-analyze", "verify", unit],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (result.stdout + result.stderr).splitlines()


# What verify says on a machine without the installed bot or its user: expected.
EXPECTED_VERIFY = re.compile(
    r"Command \S+ is not executable: No such file or directory"
    r"|[Uu]ser .*(not found|does not exist)|Failed to resolve user"
)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", UNIT_INSTANCES)
def test_systemd_accepts_the_units(unit: str, tmp_path: Path) -> None:
    for name in UNIT_FILES:  # verify finds the required units beside the one it checks
        shutil.copy(UNITS / name, tmp_path / name)
    unexpected = [
        line for line in verify_output(tmp_path, unit) if not EXPECTED_VERIFY.search(line)
    ]
    assert not unexpected, "\n".join(unexpected)

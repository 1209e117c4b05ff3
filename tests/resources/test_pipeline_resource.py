"""Download links a browser can open: presigned for the public S3 endpoint (not the internal one the pods use),
HTTPS except on loopback, and never valid for longer than the credentials that signed them. Compose runs the
pipeline as a least-privilege MinIO user, never as root."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
import yaml

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from tests.support.repo import REPO
from tests.support.s3_server import CREDENTIALS, S3Server

BODYSCRIPT = str(Path(sys.executable).with_name("bodyscript"))
PUBLIC = "BODYSCRIPT_S3_PUBLIC_ENDPOINT"
OBJECT = "s3://lake/bodyscript/overlays/video=clip/overlay.mp4"
BODY = b"\x00\x00\x00\x18ftypmp42 not really a video"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), **env})


def signed_for_its_host(link: str, secret: str) -> bool:
    """Whether the link's SigV4 query signature is valid for the host the link names (what S3 and MinIO check;
    moto does not check presigned signatures, so the test does)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(link)
    query = dict(parse_qsl(parts.query))
    unsigned = "&".join(p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature="))
    access_key, _, region, service, _ = query["X-Amz-Credential"].split("/")
    credentials = Credentials(access_key, secret, query.get("X-Amz-Security-Token"))
    auth = S3SigV4QueryAuth(credentials, service, region, expires=int(query["X-Amz-Expires"]))
    request = AWSRequest("GET", urlunsplit((parts.scheme, parts.netloc, parts.path, unsigned, "")))
    request.context["timestamp"] = query["X-Amz-Date"]
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request) == query["X-Amz-Signature"]


def expires_in(link: str) -> int:
    return int(dict(parse_qsl(urlsplit(link).query))["X-Amz-Expires"])


@pytest.mark.parametrize(
    "value",
    ["https://s3.example.com", "https://s3.example.com:8443/", "http://localhost:9000", "http://127.0.0.1:9000",
     "http://[::1]:9000", "http://minio.localhost:9000"],
)  # fmt: skip
def test_public_endpoints_that_browsers_can_open_are_accepted(tmp_path: Path, value: str) -> None:
    assert settings(tmp_path, **{PUBLIC: value}).s3_public_endpoint == value.rstrip("/")


@pytest.mark.parametrize(
    "value",
    ["ftp://x", "http://minio.internal:9000", "http://minio:9000", "https://", "s3.example.com",
     "https://user:pw@s3.example.com", "https://s3.example.com/bucket", "https://s3.example.com?x=1"],
)  # fmt: skip
def test_other_public_endpoints_stop_start_up(tmp_path: Path, value: str) -> None:
    with pytest.raises(BodyscriptError) as raised:
        settings(tmp_path, **{PUBLIC: value})
    message = str(raised.value)
    assert message.startswith(f"{PUBLIC}=") and "https://" in message and "loopback" in message
    assert "\n" not in message


def test_the_default_is_the_s3_endpoint_and_is_checked_only_where_links_are_made(tmp_path: Path) -> None:
    internal = {"AWS_ENDPOINT_URL": "http://minio:9000"}
    assert settings(tmp_path, **internal).s3_public_endpoint == "http://minio:9000", "a local lake makes no links"
    with pytest.raises(BodyscriptError) as raised:
        settings(tmp_path, BODYSCRIPT_LAKE_URI="s3://lake/bodyscript", **internal)
    assert str(raised.value).startswith(f"{PUBLIC} is unset") and "AWS_ENDPOINT_URL='http://minio:9000'" in str(
        raised.value
    )
    lake = {"BODYSCRIPT_LAKE_URI": "s3://lake/bodyscript"}
    assert settings(tmp_path, **lake).s3_public_endpoint is None, "AWS's own endpoint (HTTPS)"
    loopback = settings(tmp_path, AWS_ENDPOINT_URL_S3="http://127.0.0.1:9000", **lake, **internal)
    assert loopback.s3_public_endpoint == "http://127.0.0.1:9000"


@pytest.mark.parametrize("value", ["ftp://x", "http://minio.internal:9000"])
def test_the_cli_stops_with_one_line(tmp_path: Path, value: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "BODYSCRIPT_HOME": str(tmp_path), PUBLIC: value}
    done = subprocess.run([BODYSCRIPT, "query", "SELECT 1"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f"bodyscript: error: {PUBLIC}=")


@pytest.fixture
def internal_and_public(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, str]:
    """The pods reach S3 at ``localhost``, browsers at ``127.0.0.1``: two names of one moto server."""
    port = urlsplit(s3.endpoint).port
    internal, public = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", internal)
    monkeypatch.setenv("BODYSCRIPT_HOME", str(tmp_path))
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", "s3://lake/bodyscript")
    monkeypatch.setenv(PUBLIC, public)
    client = s3.client()
    client.create_bucket(Bucket="lake")
    client.put_object(Bucket="lake", Key=OBJECT.removeprefix("s3://lake/"), Body=BODY)
    return internal, public


def test_links_are_presigned_for_the_public_host_and_download(internal_and_public: tuple[str, str]) -> None:
    internal, public = internal_and_public
    link = PipelineResource(Settings.from_env()).download_link(OBJECT)
    assert link is not None and link.startswith(f"{public}/lake/bodyscript/overlays/"), link
    assert expires_in(link) == 86400, "long-term keys: the configured lifetime"
    secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert signed_for_its_host(link, secret)
    assert not signed_for_its_host(link.replace(public, internal), secret), "a rewritten link would be refused"
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.read() == BODY


def test_links_never_outlive_temporary_credentials(
    internal_and_public: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-session-token")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", (datetime.now(UTC) + timedelta(minutes=40)).isoformat())
    link = PipelineResource(Settings.from_env()).download_link(OBJECT)
    assert link is not None and "X-Amz-Security-Token=a-session-token" in link
    assert 39 * 60 <= expires_in(link) <= 40 * 60, "capped at the credentials' remaining lifetime"
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.read() == BODY

    monkeypatch.delenv("AWS_CREDENTIAL_EXPIRATION")
    link = PipelineResource(Settings.from_env()).download_link(OBJECT)
    assert link is not None and expires_in(link) == 3600, "a session token of unknown expiry: one hour at most"

    monkeypatch.setenv("BODYSCRIPT_PRESIGN_EXPIRY_S", "600")
    link = PipelineResource(Settings.from_env()).download_link(OBJECT)
    assert link is not None and expires_in(link) == 600, "a shorter configured lifetime stays"


def compose() -> dict:
    return yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())


def test_compose_runs_the_pipeline_as_a_least_privilege_user() -> None:
    spec = compose()
    env = spec["x-bodyscript-env"]
    assert "MINIO_ROOT" not in env["AWS_ACCESS_KEY_ID"] + env["AWS_SECRET_ACCESS_KEY"]
    for service in ("code", "webserver", "daemon"):
        assert spec["services"][service]["environment"] == env
        assert "MINIO_ROOT_USER" not in json.dumps(spec["services"][service])
    public = env[PUBLIC].removeprefix("${BODYSCRIPT_S3_PUBLIC_ENDPOINT:-").removesuffix("}")
    assert public == "http://127.0.0.1:9000", "MinIO's port as published on the VM's loopback"
    assert "127.0.0.1:9000:9000" in spec["services"]["minio"]["ports"]
    init = spec["services"]["buckets"]
    script = init["entrypoint"]
    user = "$$PIPELINE_S3_ACCESS_KEY"
    for step in ("mc admin user add local", "mc admin policy create local bodyscript-pipeline",
                 f"mc admin policy attach local bodyscript-pipeline --user {user}"):  # fmt: skip
        assert step in script, step
    assert env["AWS_ACCESS_KEY_ID"].startswith("${PIPELINE_S3_ACCESS_KEY")


def test_the_compose_policy_is_the_iam_policy() -> None:
    """MinIO gets deploy/iam-policy.json itself, its bucket placeholders filled in for compose's buckets."""
    spec = compose()
    (config,) = spec["services"]["buckets"]["configs"]
    content = spec["configs"][config["source"]]["content"]
    env = spec["x-bodyscript-env"]
    buckets = {
        "DROP_BUCKET": env["BODYSCRIPT_DROP_URI"].removeprefix("s3://").split("/")[0],
        "LAKE_BUCKET": env["BODYSCRIPT_LAKE_URI"].removeprefix("s3://").split("/")[0],
        "LOG_BUCKET": env["BODYSCRIPT_LOG_BUCKET"],
    }
    policy = (REPO / "deploy" / "iam-policy.json").read_text()
    for placeholder, bucket in buckets.items():
        policy = policy.replace(placeholder, bucket)
    assert json.loads(content) == json.loads(policy)
    assert config["target"] in spec["services"]["buckets"]["entrypoint"]

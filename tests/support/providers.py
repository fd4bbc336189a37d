"""Worker environment that configures every LLM provider against the scripted server, so one
stack serves anthropic (the default), openai, bedrock and vertex through the real SDK clients.

Credentials are fakes in the platforms' usual places: AWS keys in AWS's variables (the requests
are SigV4-signed, the server does not check), and for Google a service-account file found by
Application Default Credentials whose token endpoint is the scripted server's `/token`.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

OPENAI_KEY = "sk-openai-test"
AWS_SECRET = "aws-secret-test"


def google_service_account(path: Path, token_uri: str) -> Path:
    """A service-account key file (a fresh RSA key) whose tokens come from `token_uri`."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        info = {
            "type": "service_account", "project_id": "scripted-project", "private_key_id": "scripted",
            "private_key": key.decode(), "client_email": "worker@scripted-project.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri,
        }
        path.write_text(json.dumps(info))
    return path


def provider_env(tmp: Path, base_url: str) -> dict[str, str]:
    return {
        "LLM_PROVIDERS": "openai,bedrock,vertex",
        "OPENAI_BASE_URL": f"{base_url}/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_BEDROCK_BASE_URL": base_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDSCRIPTED",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "ANTHROPIC_VERTEX_BASE_URL": f"{base_url}/v1",
        "CLOUD_ML_REGION": "us-east5",
        "ANTHROPIC_VERTEX_PROJECT_ID": "scripted-project",
        "GOOGLE_APPLICATION_CREDENTIALS": str(google_service_account(tmp / "google-adc.json", f"{base_url}/token")),
    }

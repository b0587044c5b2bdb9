"""Fill deploy/nginx.conf's ${NAME} placeholders, as the nginx image's envsubst step does.

The container never runs this (the official nginx image substitutes the template itself from its
environment); the production-topology test does, so that it serves the shipped file. Like the
image, only ${NAME} with NAME defined is replaced; unlike it, a placeholder left unfilled is an
error here instead of an empty string in the config. The values deploy/nginx-limits.envsh derives
(`DERIVED`) are derived here by sourcing that same script, as the image's entrypoint does.

    python deploy/render_nginx_conf.py deploy/nginx.conf out.conf   # values from the environment
"""

import os
import re
import subprocess
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
LIMITS_SCRIPT = Path(__file__).with_name("nginx-limits.envsh")
DERIVED = ("NGINX_MAX_BODY_MB",)
LIMIT_INPUTS = ("MAX_UPLOAD_MB", "ONNX_MAX_MB")


def derived(values: dict[str, str]) -> dict[str, str]:
    """`DERIVED` from the app's upload limits in `values` (their defaults when absent)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **{k: values[k] for k in LIMIT_INPUTS if k in values}}
    script = '. "$0" && echo "$NGINX_MAX_BODY_MB"'
    result = subprocess.run(["sh", "-c", script, str(LIMITS_SCRIPT)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(result.stderr.strip())
    return {"NGINX_MAX_BODY_MB": result.stdout.strip()}


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: dict[str, str]) -> str:
    values = {**values, **derived(values)}
    missing = sorted(placeholders(template) - set(values))
    if missing:
        raise KeyError(f"nginx template needs values for: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


if __name__ == "__main__":
    source, target = sys.argv[1:3]
    with open(source) as fh:
        text = render(fh.read(), dict(os.environ))
    with open(target, "w") as fh:
        fh.write(text)

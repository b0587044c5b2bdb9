"""Fill deploy/nginx.conf's ${NAME} placeholders, as the nginx image's envsubst step does.

The container never runs this (the official nginx image substitutes the template itself from its
environment); the production-topology test does, so that it serves the shipped file. Like the
image, only ${NAME} with NAME defined is replaced; unlike it, a placeholder left unfilled is an
error here instead of an empty string in the config.

    python deploy/render_nginx_conf.py deploy/nginx.conf out.conf   # values from the environment
"""

import os
import re
import sys

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: dict[str, str]) -> str:
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

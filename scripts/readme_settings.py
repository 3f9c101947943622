"""Regenerate the README's settings tables from the plugins' own `--about --format=markdown`.

python scripts/readme_settings.py          # rewrite README.md in place
python scripts/readme_settings.py --check  # exit 1 when README.md is stale (make test)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLUGINS = ("tap-xero", "target-powerbi")
# Settings every SDK plugin has; the README names them once instead of repeating them.
SDK_SETTINGS = re.compile(
    r"^\| (stream_maps|stream_map_config|faker_config|flattening_|batch_config|"
    r"add_record_metadata|load_method|validate_records|batch_size_rows|"
    r"process_activate_version_messages|hard_delete)"
)


def settings_table(plugin: str) -> str:
    exe = Path(sys.executable).parent / plugin
    about = subprocess.run(
        [str(exe), "--about", "--format=markdown"], check=True, capture_output=True, text=True
    ).stdout
    section = about.split("## Settings", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if not SDK_SETTINGS.match(line)]
    return "\n".join(rows)


def render(readme: str) -> str:
    for plugin in PLUGINS:
        start, end = f"<!-- {plugin} settings -->", f"<!-- /{plugin} settings -->"
        if start not in readme:
            msg = f"README.md lacks the marker {start}"
            raise SystemExit(msg)
        head, rest = readme.split(start, 1)
        _, tail = rest.split(end, 1)
        readme = f"{head}{start}\n{settings_table(plugin)}\n{end}{tail}"
    return readme


def main(argv: list[str]) -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            sys.stderr.write("README settings tables are stale: run scripts/readme_settings.py\n")
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

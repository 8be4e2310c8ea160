"""Check every pinned hub revision of a config against the hub, before any job runs.

    python -m apipack.pins --configfile configs/paper.yaml      # one line per pin; exit 1 on a problem
    python -m apipack.pins --commits codellama/CodeLlama-13b-hf  # a repository's commits, newest first

The config files are read as Snakemake reads them: a --configfile replaces config.yaml, several
merge in the order given, and the schema fills in the defaults. Only the hub's API is asked (the
repository at the pinned revision, and for a gated one whether HF_TOKEN may read it): nothing is
downloaded. The token comes from HF_TOKEN only, as for the downloads, and is never printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from .download import Pin, hub_fix, hub_token

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
NEWEST = 3  # commits shown beside a revision the hub does not have


def load_config(files: Iterable[Path]) -> dict:
    """The config Snakemake holds for ``--configfile files``: merged in order, schema defaults."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for path in files:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    validate(config, str(SCHEMA))
    return config


def config_pins(config: dict) -> list[Pin]:
    """The dataset (when data.source is download) and every model with source hub."""
    pins = []
    if config["data"]["source"] == "download":
        dl = config["data"]["download"]
        pins.append(Pin("data.download", dl["repo"], dl["revision"], "dataset"))
    for name, spec in config["models"].items():
        if spec["source"] == "hub":
            pins.append(Pin(f"models.{name}", spec["repo"], spec["revision"]))
    return pins


def newest_commits(api, repo: str, repo_type: str, n: int | None = None) -> list[str]:
    """``sha date title`` of a repository's commits on its default branch, newest first."""
    commits = api.list_repo_commits(repo, repo_type=repo_type, token=hub_token())
    return [f"{c.commit_id} {c.created_at.date()} {c.title}" for c in commits[:n]]


def check_pin(api, pin: Pin) -> str | None:
    """None when the hub has the revision and HF_TOKEN may read it; otherwise the problem and its fix."""
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    try:
        info = api.repo_info(pin.repo, repo_type=pin.repo_type, revision=pin.revision, token=hub_token())
        if info.gated:  # its files need an account that accepted the licence
            api.auth_check(pin.repo, repo_type=pin.repo_type, token=hub_token())
    except RevisionNotFoundError as err:
        fix = hub_fix(err, pin)
        try:
            return fix + "; newest: " + " | ".join(newest_commits(api, pin.repo, pin.repo_type, NEWEST))
        except HfHubHTTPError:
            return fix
    except HfHubHTTPError as err:
        return hub_fix(err, pin) or f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 (connection refused, DNS, timeout, offline mode)
        return f"the hub did not answer ({type(err).__name__}: {err}); run this where the network is"
    return None


def check(pins: list[Pin]) -> int:
    """One line per pin (OK, or PROBLEM and what to do); the number of problems."""
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=constants.ENDPOINT)
    problems = 0
    for pin in pins:
        problem = check_pin(api, pin)
        problems += problem is not None
        status = "OK" if problem is None else f"PROBLEM: {problem}"
        print(f"{pin.entry}: {pin.repo_type} {pin.repo}@{pin.revision} {status}", flush=True)
    print(f"{len(pins)} pins checked against {constants.ENDPOINT}, {problems} with a problem")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apipack.pins", description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--commits", metavar="REPO", help="list REPO's commits instead of checking pins")
    parser.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    args = parser.parse_args(argv)
    if args.commits:
        from huggingface_hub import HfApi, constants

        print("\n".join(newest_commits(HfApi(endpoint=constants.ENDPOINT), args.commits, args.repo_type)))
        return 0
    missing = [str(path) for path in args.configfile if not path.is_file()]
    if missing:
        parser.error(f"no such config file: {', '.join(missing)}")
    return 1 if check(config_pins(load_config(args.configfile))) else 0


if __name__ == "__main__":
    sys.exit(main())

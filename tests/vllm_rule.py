"""Run a rule script as Snakemake's `script:` directive does, with another env's interpreter (here
.venv-vllm's, which has no Snakemake): the job's values (JSON, argv[1]) become the `snakemake`
object the script reads, and the script runs as the main module. With `record` set, what
vLLM's `LLM.generate` receives is appended to that file (JSON lines) before vLLM runs it.
"""

import json
import runpy
import sys
from types import SimpleNamespace


class Named(list):
    """Snakemake's Namedlist as rule scripts read it: by position and, for a dict, by name."""

    def __init__(self, values: dict | list):
        super().__init__(values.values() if isinstance(values, dict) else values)
        if isinstance(values, dict):
            self.__dict__.update(values)


def record_generate(path: str) -> None:
    from vllm import LLM

    run = LLM.generate

    def generate(self, prompts, params, **kwargs):
        fields = ("temperature", "top_k", "top_p", "seed", "max_tokens", "stop", "ignore_eos")
        per_prompt = {f: [getattr(p, f) for p in params] for f in fields}  # one SamplingParams per prompt
        rec = {"prompt_token_ids": [p["prompt_token_ids"] for p in prompts], **per_prompt}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        return run(self, prompts, params, **kwargs)

    LLM.generate = generate


def main() -> None:
    job = json.loads(open(sys.argv[1], encoding="utf-8").read())
    if job.get("record"):
        record_generate(job["record"])
    snakemake = SimpleNamespace(
        **{k: Named(job[k]) for k in ("input", "output", "log", "wildcards", "params", "resources")},
        config=job["config"],
        threads=job["threads"],
        rule=job["rule"],
    )
    runpy.run_path(job["script"], init_globals={"snakemake": snakemake}, run_name="__main__")


if __name__ == "__main__":
    main()

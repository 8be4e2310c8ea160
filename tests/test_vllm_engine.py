"""VLLMEngine's settings: tensor parallelism from generation.gpus; a LoRA adapter on the base model,
a fully fine-tuned folder as the model. vLLM needs a GPU and its own env (envs/vllm.yaml), so a
stand-in `vllm` module records what the engine asks of it."""

import json
import sys
import types

import pytest

from apipack.generate import make_engine
from apipack.settings import GenerationSettings

GEN = GenerationSettings(engine="vllm", batch_size=8, dtype="bfloat16", do_sample=False, temperature=None,
                         max_new_tokens=8, max_prompt_tokens=100, max_total_tokens=108, trust_remote_code=False)
HUB = {"source": "hub"}


class FakeLLM:
    last = None

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        FakeLLM.last = self

    def generate(self, prompts, params, lora_request=None, use_tqdm=False):
        self.calls.append((prompts, params, lora_request))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"out {p}")]) for p in prompts]


@pytest.fixture(autouse=True)
def fake_vllm(monkeypatch):
    vllm, request = types.ModuleType("vllm"), types.ModuleType("vllm.lora.request")
    vllm.LLM, vllm.SamplingParams = FakeLLM, dict
    request.LoRARequest = lambda name, number, path: (name, number, path)
    for name, module in {"vllm": vllm, "vllm.lora": types.ModuleType("vllm.lora"),
                         "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_lora_adapter_is_served_on_the_base_model(tmp_path):
    adapter = tmp_path / "ft"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12, "lora_alpha": 24}))
    engine = make_engine(HUB, "base", str(adapter), GEN, 4)
    kwargs = FakeLLM.last.kwargs
    assert kwargs["model"] == "base" and kwargs["tensor_parallel_size"] == 4
    assert kwargs["enable_lora"] and kwargs["max_lora_rank"] == 16  # vLLM's next allowed rank
    assert engine(["p1", "p2"], 3) == ["out p1", "out p2"]
    prompts, params, lora = FakeLLM.last.calls[0]
    assert lora == ("adapter", 1, str(adapter)) and params["seed"] == 3 and params["temperature"] == 0.0
    assert params["truncate_prompt_tokens"] == 100 and kwargs["max_model_len"] == 108


def test_fully_fine_tuned_folder_is_the_model(tmp_path):
    full = tmp_path / "ft"
    full.mkdir()
    (full / "config.json").write_text("{}")
    engine = make_engine(HUB, "base", str(full), GEN, 0)
    kwargs = FakeLLM.last.kwargs
    assert kwargs["model"] == str(full) and kwargs["tensor_parallel_size"] == 1
    assert "enable_lora" not in kwargs
    engine(["p"], 0)
    assert FakeLLM.last.calls[0][2] is None


def test_untuned_base_model(tmp_path):
    make_engine(HUB, str(tmp_path), None, GEN, 2)
    kwargs = FakeLLM.last.kwargs
    assert kwargs["model"] == str(tmp_path) and kwargs["tensor_parallel_size"] == 2
    assert "enable_lora" not in kwargs

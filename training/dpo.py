"""DPO (TRL's DPOTrainer) on top of a LoRA SFT adapter.

Stage 1 trains the SFT adapter on train.jsonl; stage 2 keeps training that same
adapter on preference pairs. With `ref_model=None` on a PEFT model, TRL 1.x
keeps the reference as a frozen copy of the SFT adapter's LoRA weights (a few
MB) on the same base: the reference is the SFT policy, as DPO intends, and no
second copy of the model is held in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.datasets import PreferenceRecord
from training.examples import preference_dataset, user_text
from training.job import ARTIFACT, TrainingJob, TrainingResult, count_parameters, load_tokenizer
from training.lora import train_adapter
from training.runner import frozen_weights_dtype, train_with_progress, training_arguments

SFT_STAGE = "sft"


def train(job: TrainingJob) -> TrainingResult:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    if not job.preferences:
        raise ValueError(f"{job.department}: DPO needs preference pairs (preference.jsonl)")
    stages = []
    sft_adapter = job.run_dir / SFT_STAGE / ARTIFACT
    if not (job.resume and (sft_adapter / "adapter_config.json").exists()):
        _, sft_stage = train_adapter(job, job.run_dir / SFT_STAGE)
        stages.append(sft_stage)

    recipe = job.recipe
    tokenizer = load_tokenizer(job.base_model)
    base = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=frozen_weights_dtype(recipe))
    model = PeftModel.from_pretrained(base, str(sft_adapter), is_trainable=True)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=training_arguments(
            recipe, job.run_dir, epochs=recipe.dpo_epochs, learning_rate=recipe.dpo_learning_rate,
            batch_size=recipe.dpo_batch_size, config_class=DPOConfig,
            beta=recipe.dpo_beta, max_length=recipe.max_length,
        ),
        train_dataset=preference_dataset(tokenizer, job.system_prompt, job.preferences),
        processing_class=tokenizer,
    )
    stages.append(
        train_with_progress(trainer, f"{job.department} dpo", resume=job.resume, show_progress=job.show_progress)
    )
    # TRL keeps a frozen copy of the SFT adapter named "ref"; only the trained one is served.
    model.save_pretrained(str(job.artifact_dir), selected_adapters=["default"])
    trainable, total = count_parameters(model)
    return TrainingResult(job.artifact_dir, "adapter", stages, trainable, total)


def preference_margin(
    model: Any, tokenizer: Any, system_prompt: str, records: Sequence[PreferenceRecord]
) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected), each given its prompt.

    DPO should raise it; it is what the preference loss pushes on.
    """
    import torch

    from core.messages import Turn
    from inference.chat_format import encode_chat

    def answer_logprob(prompt_ids: list[int], answer: str) -> float:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return logprobs.gather(1, torch.tensor(answer_ids, device=model.device)[:, None]).sum().item()

    margins = []
    for record in records:
        prompt = encode_chat(
            tokenizer, system_prompt, [Turn("user", user_text(record.prompt, record.input))],
            add_generation_prompt=True,
        )
        margins.append(answer_logprob(prompt, record.chosen) - answer_logprob(prompt, record.rejected))
    return sum(margins) / len(margins)

"""DPO (TRL's DPOTrainer) on top of a LoRA SFT adapter.

Stage 1 trains the SFT adapter on train.jsonl; stage 2 keeps training that same
adapter on preference pairs. With `ref_model=None` on a PEFT model, TRL 1.x
keeps the reference as a frozen copy of the SFT adapter's LoRA weights (a few
MB) on the same base: the reference is the SFT policy, as DPO intends, and no
second copy of the model is held in memory.
"""

from __future__ import annotations

from training.examples import preference_dataset
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

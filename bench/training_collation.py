"""Training speed: dynamic padding (ours) vs every example padded to 512 tokens (the course's way).

    python bench/training_collation.py [--department hr] [--records 32] [--method lora]

Same records, same model, same LoRA recipe, one epoch each, in one run. Prints
real (non-padding) training tokens/s, wall time per epoch extrapolated to the
department's whole train.jsonl, and the ratio. Target: ours >= 3x faster.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from core.company import load_company
from gateway.settings import Settings
from inference.base_model import resolve_base_model
from training import lora
from training.datasets import department_files, load_sft
from training.examples import IGNORE_INDEX, padding_collator, plain_examples, sft_dataset
from training.job import TrainingJob, load_tokenizer
from training.recipe import Recipe
from training.runner import training_arguments

COURSE_LENGTH = 512


def epoch_seconds(job: TrainingJob, collator, dataset) -> tuple[float, int]:
    from transformers import Trainer

    model = lora.build_model(job)
    trainer = Trainer(
        model=model,
        args=training_arguments(job.recipe, job.run_dir, epochs=1, learning_rate=job.recipe.learning_rate,
                                batch_size=job.recipe.batch_size, save_strategy="no"),
        train_dataset=dataset,
        data_collator=collator,
    )
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, int(trainer.state.num_input_tokens_seen)


def main() -> None:
    from transformers import DataCollatorForSeq2Seq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--department", default="hr")
    parser.add_argument("--records", type=int, default=32, help="records timed (the ratio is what matters)")
    parser.add_argument("--method", default="lora", choices=["lora", "qlora"])
    args = parser.parse_args()

    settings = Settings()
    base = resolve_base_model(settings.base_model, settings.home)
    all_records = load_sft(department_files(args.department).train)
    records = plain_examples(all_records[: args.records])
    recipe = Recipe(method=args.method, epochs=1, batch_size=8, max_length=COURSE_LENGTH)
    workdir = Path(tempfile.mkdtemp(prefix="bench-collation-"))
    tokenizer = load_tokenizer(base)
    dataset = sft_dataset(tokenizer, load_company().system_prompts()[args.department], records, recipe.max_length)
    course = DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=COURSE_LENGTH,
                                    label_pad_token_id=IGNORE_INDEX)
    results = {}
    for name, collator in (("dynamic padding (ours)", padding_collator(tokenizer)), ("padded to 512 (course)", course)):
        job = TrainingJob(args.department, base, load_company().system_prompts()[args.department], records, recipe,
                          workdir / name.split()[0], show_progress=False)
        results[name] = epoch_seconds(job, collator, dataset)
    shutil.rmtree(workdir, ignore_errors=True)

    scale = len(all_records) / len(records)
    print(f"{args.department}, {args.method}, {len(records)} of {len(all_records)} records, batch 8, SmolLM2-135M")
    for name, (seconds, tokens) in results.items():
        print(f"  {name:24s} {tokens / seconds:7.1f} real tokens/s   {seconds * scale / 60:6.1f} min/epoch (whole set)")
    ours, course_run = results["dynamic padding (ours)"][0], results["padded to 512 (course)"][0]
    print(f"  speed-up: {course_run / ours:.2f}x  (target >= 3x)")


if __name__ == "__main__":
    main()

"""Tracebacks the simulated trainer prints, shaped like the real ones (Python 3.10 style).

Frames name the real sd-scripts, accelerate and torch files on the code path that fails; the
last line is the real exception text (torch >= 2.5 ``torch.OutOfMemoryError``).
"""

from __future__ import annotations

SD = "/home/user/sd-scripts"
SITE = "/home/user/sd-scripts/venv/lib/python3.10/site-packages"

_HEAD = [
    (f"{SD}/sdxl_train_network.py", 229, "<module>", "trainer.train(args)"),
]

_FORWARD = [
    (f"{SD}/train_network.py", 1463, "train", "loss = self.process_batch("),
    (
        f"{SD}/train_network.py",
        449,
        "process_batch",
        "noise_pred, target, timesteps, weighting = self.get_noise_pred_and_target(",
    ),
    (f"{SD}/train_network.py", 283, "get_noise_pred_and_target", "noise_pred = self.call_unet("),
    (
        f"{SD}/sdxl_train_network.py",
        208,
        "call_unet",
        "noise_pred = unet(noisy_latents, timesteps, text_embedding, vector_embedding)",
    ),
    (f"{SITE}/torch/nn/modules/module.py", 1739, "_wrapped_call_impl", "return self._call_impl(*args, **kwargs)"),
    (f"{SITE}/torch/nn/modules/module.py", 1750, "_call_impl", "return forward_call(*args, **kwargs)"),
    (f"{SITE}/accelerate/utils/operations.py", 819, "forward", "return model_forward(*args, **kwargs)"),
    (
        f"{SITE}/accelerate/utils/operations.py",
        807,
        "__call__",
        "return convert_to_fp32(self.model_forward(*args, **kwargs))",
    ),
    (f"{SITE}/torch/amp/autocast_mode.py", 44, "decorate_autocast", "return func(*args, **kwargs)"),
    (f"{SD}/library/sdxl_original_unet.py", 1104, "forward", "h = call_module(module, h, emb, context)"),
    (f"{SD}/library/sdxl_original_unet.py", 1087, "call_module", "x = layer(x, context)"),
]

_BACKWARD = [
    (f"{SD}/train_network.py", 1476, "train", "accelerator.backward(loss)"),
    (f"{SITE}/accelerate/accelerator.py", 2454, "backward", "loss.backward(**kwargs)"),
    (f"{SITE}/torch/_tensor.py", 626, "backward", "torch.autograd.backward("),
    (f"{SITE}/torch/autograd/__init__.py", 347, "backward", "_engine_run_backward("),
    (
        f"{SITE}/torch/autograd/graph.py",
        823,
        "_engine_run_backward",
        "return Variable._execution_engine.run_backward(  # Calls into the C++ engine to run the backward pass",
    ),
]

_SLEEPING = [
    (f"{SD}/train_network.py", 1446, "train", "for step, batch in enumerate(skipped_dataloader or train_dataloader):"),
    (f"{SITE}/accelerate/data_loader.py", 566, "__iter__", "next_batch = next(dataloader_iter)"),
    (f"{SITE}/torch/utils/data/dataloader.py", 708, "__next__", "data = self._next_data()"),
    (f"{SITE}/torch/utils/data/dataloader.py", 1458, "_next_data", "idx, data = self._get_data()"),
    (f"{SITE}/torch/utils/data/dataloader.py", 1410, "_get_data", "success, data = self._try_get_data()"),
    (f"{SITE}/torch/utils/data/dataloader.py", 1251, "_try_get_data", "data = self._data_queue.get(timeout=timeout)"),
    ("/usr/lib/python3.10/multiprocessing/queues.py", 113, "get", "if not self._poll(timeout):"),
    ("/usr/lib/python3.10/multiprocessing/connection.py", 257, "poll", "return self._poll(timeout)"),
    ("/usr/lib/python3.10/multiprocessing/connection.py", 424, "_poll", "r = wait([self], timeout)"),
    ("/usr/lib/python3.10/multiprocessing/connection.py", 931, "wait", "ready = selector.select(timeout)"),
    ("/usr/lib/python3.10/selectors.py", 416, "select", "fd_event_list = self._selector.poll(timeout)"),
]


def _render(frames: list[tuple[str, int, str, str]], last: str) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, line, func, code in _HEAD + frames:
        lines.append(f'  File "{path}", line {line}, in {func}')
        lines.append(f"    {code}")
    lines.append(last)
    return "\n".join(lines) + "\n"


def oom_message(gpu_total_gib: float = 23.64, tried_mib: float = 1280.0) -> str:
    """The torch >= 2.5 CUDA out-of-memory exception line."""
    free = 0.19
    in_use = gpu_total_gib - free
    allocated = in_use - 0.71
    return (
        f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried_mib / 1024:.2f} GiB. "
        f"GPU 0 has a total capacity of {gpu_total_gib:.2f} GiB of which {free * 1024:.2f} MiB is free. "
        f"Including non-PyTorch memory, this process has {in_use:.2f} GiB memory in use. "
        f"Of the allocated memory {allocated:.2f} GiB is allocated by PyTorch, and 512.37 MiB is reserved "
        "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
        "for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )


def oom_traceback() -> str:
    return _render(_BACKWARD, oom_message())


CRASH_MESSAGE = (
    "RuntimeError: CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
    "below might be incorrect.\n"
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)


def crash_traceback() -> str:
    return _render(_FORWARD, CRASH_MESSAGE.rstrip("\n"))


def keyboard_interrupt_traceback(during_step: bool = True) -> str:
    return _render(_FORWARD if during_step else _SLEEPING, "KeyboardInterrupt")


def logging_dir_traceback() -> str:
    """``--log_with tensorboard`` without ``--logging_dir`` (train_util.prepare_accelerator)."""
    frames = [
        (f"{SD}/train_network.py", 590, "train", "accelerator = train_util.prepare_accelerator(args)"),
        (f"{SD}/library/train_util.py", 5550, "prepare_accelerator", "raise ValueError("),
    ]
    return _render(
        frames,
        "ValueError: logging_dir is required when log_with is tensorboard / "
        "Tensorboardを使う場合、logging_dirを指定してください",
    )


def warmup_traceback(name: str) -> str:
    """``--lr_scheduler constant`` with ``--lr_warmup_steps`` (train_util.get_scheduler_fix)."""
    frames = [
        (
            f"{SD}/train_network.py",
            765,
            "train",
            "lr_scheduler = train_util.get_scheduler_fix(args, optimizer, accelerator.num_processes)",
        ),
        (
            f"{SD}/library/train_util.py",
            5273,
            "get_scheduler_fix",
            "return wrap_check_needless_num_warmup_steps(schedule_func(optimizer, **lr_scheduler_kwargs))",
        ),
        (
            f"{SD}/library/train_util.py",
            5221,
            "wrap_check_needless_num_warmup_steps",
            'raise ValueError(f"{name} does not require `num_warmup_steps`. Set None or 0.")',
        ),
    ]
    return _render(frames, f"ValueError: {name} does not require `num_warmup_steps`. Set None or 0.")

"""The start of a simulated run as ``sdxl_train_network.py`` logs it: datasets, models, network.

``library/train_util.py`` (``DreamBoothDataset``, ``make_buckets``), ``library/sdxl_model_util.py``
(loading the U-Net, text encoders and VAE) and ``networks/lora.py:create_network`` write these
lines, in this order, before ``running training``.
"""

from __future__ import annotations

import logging

from sdxl_tui.formats.lora import TE_MODULES, UNET_MODULES
from sdxl_tui.sim.base import TrainerBase
from sdxl_tui.sim.dataset import DatasetGroup, dataset_info_text


class StartupLog(TrainerBase):
    """The dataset, model-loading and network lines of a run's start."""

    def _log_dataset(self, group: DatasetGroup, seconds: float) -> None:
        a = self.args
        if a.dataset_config:
            self.log("dataset_config", f"Loading dataset config from {a.dataset_config}")
        for ds in group.datasets:
            self.log("prepare_images", "prepare images.")
            for s in ds.subsets:
                self.log("image_size_from_cache", "get image size from name of cache files")
                self.simple_bar(s.img_count, 0.0)
                self.log("set_image_size", f"set image size from cache files: 0/{s.img_count}")
                self.log("found_directory", f"found directory {s.image_dir} contains {s.img_count} image files")
                self.simple_bar(s.img_count, seconds * 0.2 / max(1, len(ds.subsets)), desc="read caption")
            self.log("train_images", f"{ds.num_train_images} train images with repeats.")
            self.log("reg_images", f"{ds.num_reg_images} reg images with repeats.")
            if ds.num_reg_images == 0:
                self.log("no_reg", "no regularization images / 正則化画像が見つかりませんでした", logging.WARNING)
            if ds.num_validation_images:
                self.log("prepare_images", "prepare images.")
                for s in ds.subsets:
                    if s.val_count:
                        self.log(
                            "found_directory",
                            f"found directory {s.image_dir} contains {s.img_count + s.val_count} image files",
                        )
                self.log("train_images", f"{ds.num_validation_images} validation images with repeats.")
                self.log("reg_images", "0 reg images with repeats.")
                self.log("no_reg", "no regularization images / 正則化画像が見つかりませんでした", logging.WARNING)
        for i, ds in enumerate(group.datasets):
            self.log("dataset_info", dataset_info_text(ds, i))
        for i, ds in enumerate(group.datasets):
            self.log("prepare_dataset", f"[Prepare dataset {i}]")
            self.log("loading_sizes", "loading image sizes.")
            self.simple_bar(sum(s.img_count for s in ds.subsets), seconds * 0.5)
            if ds.enable_bucket:
                self.log("make_buckets", "make buckets")
                self.log(
                    "bucket_counts", "number of images (including repeats) / 各bucketの画像枚数（繰り返し回数を含む）"
                )
                for j, (reso, count) in enumerate(ds.buckets):
                    self.log("bucket", f"bucket {j}: resolution {reso}, count: {count}")
                self.log("mean_ar", f"mean ar error (without repeats): {ds.mean_ar_error}")
            else:
                self.log("make_buckets", "prepare dataset")

    def _log_model_loading(self, seconds: float) -> None:
        a = self.args
        self.log("loading_model", "loading model for process 0/1")
        self.log("load_checkpoint", f"load StableDiffusion checkpoint: {a.pretrained_model_name_or_path}")
        steps = [
            ("building_unet", "building U-Net", 0.0),
            ("loading_unet", "loading U-Net from checkpoint", 0.05),
            ("unet_keys", "U-Net: <All keys matched successfully>", 0.5),
            ("building_te", "building text encoders", 0.0),
            ("loading_te", "loading text encoders from checkpoint", 0.05),
            ("te1_keys", "text encoder 1: <All keys matched successfully>", 0.1),
            ("te2_keys", "text encoder 2: <All keys matched successfully>", 0.2),
            ("building_vae", "building VAE", 0.0),
            ("loading_vae", "loading VAE from checkpoint", 0.05),
            ("vae_keys", "VAE: <All keys matched successfully>", 0.05),
        ]
        for key, msg, frac in steps:
            self.sleep(seconds * frac)
            self.log(key, msg)

    def _log_network(self) -> None:
        a = self.args
        self.c.print(f"import network module: {a.network_module or 'networks.lora'}")
        dim = a.network_dim if a.network_dim is not None else 4
        alpha = float(a.network_alpha if a.network_alpha is not None else 1.0)
        self.log("create_network", f"create LoRA network. base dim (rank): {dim}, alpha: {alpha}")
        self.log("dropout", f"neuron dropout: p={a.network_dropout}, rank dropout: p=None, module dropout: p=None")
        self.log("create_te", "create LoRA for Text Encoder 1:")
        self.log("create_te", "create LoRA for Text Encoder 2:")
        self.log("create_te_total", f"create LoRA for Text Encoder: {TE_MODULES} modules.")
        self.log("create_unet", f"create LoRA for U-Net: {UNET_MODULES} modules.")
        if not self.unet_only:
            self.log("enable_te", f"enable LoRA for text encoder: {TE_MODULES} modules")
        if not self.te_only:
            self.log("enable_unet", f"enable LoRA for U-Net: {UNET_MODULES} modules")

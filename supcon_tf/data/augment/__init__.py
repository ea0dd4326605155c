"""Image augmentations as pure functions of (image, seed).

Three modules, one concern each:

* `ops`: the image ops (crop, flip, colour jitter, grayscale, blur, decode and
  crop), stateless and with explicit parameters.
* `policies`: AutoAugment and RandAugment, official's ops with a stateless
  selection (reproducible per seed, allowed in a checkpointable `Dataset.map`).
* `views`: the training and evaluation views, configured by the frozen
  `ViewSpec` / `EvalViewSpec` built once from the `DataConfig`.

Import the module you need: `from supcon_tf.data.augment import views`.
"""

"""Self-supervised pre-training stages (no emotion labels): ``sertk pretrain <method>``.

* :mod:`sertk.pretrain.cpc`: Contrastive Predictive Coding on raw audio (Li et al. 2021), whose
  ``cpc.safetensors`` initialises the ``cpc`` model (``model.conf.init_checkpoint``).
"""

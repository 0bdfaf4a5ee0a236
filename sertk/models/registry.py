"""The model registry. Every model maps ``(feats [B, T, D], lengths [B]) -> logits [B, C]``
and is built as ``MODELS.build(name, input_dim=D, num_classes=C, **conf)``.

Models with auxiliary tasks (speaker/corpus adversaries, gender, reconstruction) declare:

* ``aux_tables = ("utt2spk", ...)``: Kaldi tables of per-utterance categorical targets (or a
  static ``aux_tables_for(conf)`` when the tables depend on the config); the trainer builds
  each table's class list from the training set and passes ``aux_classes={"utt2spk": n, ...}``
  to the constructor;
* ``auxiliary_loss(aux_targets: dict[str, LongTensor]) -> Tensor``, called right after the
  network's forward, inside the (DDP-wrapped) ``EmotionClassifier.forward``, with the batch's
  targets (-1 where unknown); its value is added to the emotion loss;
* optionally ``emotion_loss_weight`` (0 in a pre-training stage: the best checkpoint is then
  the last epoch, since validation UA means nothing) and ``ddp_find_unused_parameters = True``
  when a stage leaves parameters without gradients.
"""

from sertk.registry import Registry

MODELS = Registry("model")

"""The model registry. Every model maps ``(feats [B, T, D], lengths [B]) -> [B, num_classes]``
and is built as ``MODELS.build(name, input_dim=D, num_classes=C, **conf)``. In a
categorical task the outputs are logits over the labels; in a dimensional task (training
config ``task: dimensional``) ``num_classes`` is the number of dimensions (``utt2dim``'s
columns, e.g. arousal valence dominance) and the outputs are the predicted values.

Models with auxiliary tasks (speaker/corpus adversaries, gender, reconstruction, CTC,
per-listener labels) declare:

* ``aux_tables = ("utt2spk", ...)``: Kaldi tables of per-utterance targets (or a static
  ``aux_tables_for(conf)`` when the tables depend on the config);
* optionally ``aux_kinds = {"table": kind}`` (or a static ``aux_kinds_for(conf)``); a table
  not named there is ``class``. What the trainer builds from the training set, passes to the
  constructor as ``aux_classes[table]``, and gives ``auxiliary_loss`` per batch:

  - ``class``: the table's sorted values are the classes; ``aux_classes``: their number;
    target ``LongTensor [B]``, -1 where the utterance has no entry or an unseen value;
  - ``vector``: whitespace-separated numbers (e.g. ``utt2dim``); ``aux_classes``: the
    number of columns; target ``FloatTensor [B, K]``, NaN rows where unknown;
  - ``tokens``: a transcript table (``text``) encoded with the tokenizer at
    ``conf["tokenizer"]`` (``sertk tokenizer train``; id 0 is the CTC blank);
    ``aux_classes``: the vocabulary size; target ``(LongTensor [B, L] padded with 0,
    LongTensor [B] lengths)``, length 0 where the utterance has no transcript;
  - ``listeners``: per-annotator labels ``utt L1:label L2:label ...`` (``utt2listener_emo``);
    listeners with fewer than ``conf["listener_min_utts"]`` (default 1) training utterances
    are pooled as ``other``; ``aux_classes``: the number of listeners (sorted names, then
    ``other`` when used; the list is written to ``EXP/aux/<table>.txt``); target
    ``LongTensor [B, NL]``: the index of the listener's label in the training label list,
    -1 where that listener gave none or one outside the list (a listener's first usable
    label counts when it gave several);

* ``auxiliary_loss(aux_targets: dict[str, target]) -> Tensor``, called right after the
  network's forward, inside the (DDP-wrapped) ``EmotionClassifier.forward``, with the batch's
  targets; its value is added to the emotion loss;
* optionally ``emotion_loss_weight`` (0 in a pre-training stage: the best checkpoint is then
  the last epoch, since validation UA means nothing, unless the model sets
  ``select_on_valid = True`` because its forward output is still meaningful, e.g. a majority
  estimate computed from listener outputs) and ``ddp_find_unused_parameters = True`` when a
  stage leaves parameters without gradients.
"""

from sertk.registry import Registry

MODELS = Registry("model")

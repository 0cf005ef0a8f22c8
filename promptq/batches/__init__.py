"""Batch runs, as one feature: many prompts as one job, each item an ordinary execution.

A batch's life, module by module:

- **start** (``start``): the callable (``enqueue.batches.start_batch``) checks the request and
  builds its items (``enqueue.batch_items``); the batch is **claimed** (``claims.BatchClaims.claim``:
  its document created, with what the start takes of its owner's account and the project's
  spend, before any item); its items are written, the heads of the lanes the fair-share caps
  allow handed over, the others parked.
- **lanes** (``batch``): item ``k`` follows item ``k - maxConcurrency``; each item's end hands
  over the next of its lane (``flow.BatchFlow.after_end``), so at most ``maxConcurrency`` items
  are queued or running, and nothing but the items' own documents is written as they run.
- **fair share** (``fairshare``, ``fairshare_store``): lanes in flight are capped per user and
  for the project; a lane beyond a cap waits parked and starts when another ends (``promptq.batches.flow.BatchFlow.wake``).
- **fold** (``fold``, ``store.BatchStore.fold``): the batch document's counts and totals from its
  items, at most about once a second; the fold that sees every item ended ends the batch and
  settles its owner's account, once.
- **cancel and retry** (``enqueue.batches``: ``cancel_batch``, ``retry_batch``): waiting items
  end at once, running ones are stopped as Stop does; a retry claims its round
  (``claims.BatchClaims.claim_round``) and writes new items for the failed ones.
- **repair** (``flow.BatchFlow.repair``, run by the sweeper): a batch nothing folded, a lane whose
  end was lost, an item whose turn was lost.

Rings inside the feature (tests/tools/test_layout.py): ``batch``, ``fold`` and ``fairshare`` are
pure (the domain's ring); ``claims``, ``store`` and ``fairshare_store`` speak to Firestore (the
adapters'); ``flow`` and ``start`` run a batch on them. The worker (after each item) and the
sweeper use ``flow`` directly: it is not a callable's.
"""

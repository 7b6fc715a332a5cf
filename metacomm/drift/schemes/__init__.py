"""The receivers of a drift run, one module per family; each registers its schemes with
:func:`metacomm.drift.registry.register_scheme` and is listed in :data:`~metacomm.drift.registry.BUILTIN_MODULES`
or :data:`~metacomm.drift.registry.PACK_MODULES`:

* :mod:`.adaptive` -- the AdaptiveCodec policies, static, retrain (kind adaptive);
* :mod:`.tracking` -- the meta-learned tracker ``track`` and its variants (adaptive);
* :mod:`.ls` -- least-squares receivers that know only the pilots (classical);
* :mod:`.model_based` -- LMMSE/Kalman receivers that know the prior, rho, N0 (classical);
* :mod:`.reference` -- the genie and its dB-offset yardsticks (reference);
* the packs' schemes: :mod:`.adversarial` (``meta-adv``), :mod:`.label_noise` (``dd-*``), :mod:`.quantized`
  (``meta-q8``, ``meta-q4``).
"""

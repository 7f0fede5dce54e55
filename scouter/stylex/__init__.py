"""StylEx ("Explaining in Style", Lang et al., ICCV 2021) for any classifier of the zoo.

A StyleGAN2-style generator and an encoder, trained with the frozen classifier's probabilities in
the styles, reconstruct images so that the classifier still agrees; AttFind then searches the
generator's StyleSpace for the few coordinates that move the classifier most.

Modules: ``errors`` (``StylexInputError``), ``preprocessing`` (generator images → the
classifier's input), ``generator``, ``encoder``, ``discriminator``, ``losses``, ``module``
(training), ``data``, ``checkpoints``, ``attfind``, ``metrics``, ``realism`` (the discriminator
filter, how far edits move the images), ``export``, ``cli``, ``run_attfind`` and
``attfind_options`` (``stylex.py attfind``).
"""

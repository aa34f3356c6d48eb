"""The command lines. Each module's ``main(argv=None)`` is a console script of the installed
package (``resnest-<module name with dashes>``, see setup.py) and is what the thin scripts in a
clone's ``train/`` and ``eval/`` call; multi-process commands launch ``python -m
gluon_resnest.commands.<module>`` or ``python -m gluon_resnest.launch`` under horovodrun, so
they work from either. The experiments (the main job, the demo) have their own, in experiments/."""

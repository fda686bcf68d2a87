"""ml_collections config files, one per dataset; `get_config("<model>[,<option>...]")` in each.

Pass one to a launcher as `--config=psm_jax/configs/<dataset>.py:<model>,<options>`, override any
field with `--config.<field>=<value>`. `base.get_config` documents every field.
"""

"""The configuration: immutable, validated models read from YAML (`config`), and the wording of
their errors (`config_errors`). Imports nothing else of ssa_controller.
"""

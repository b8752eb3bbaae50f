"""The failure-mode lab (`ssa-controller lab`): each classic controller failure reproduced by a
deliberately bad controller (`bad/`), measured beside this controller under the same load, on
the embedded control plane or a given cluster. A package beside ssa_controller, not in it: the
controller never loads it and its image does not contain it.

- target: where it runs (local control plane with one user per role and its audit log, or a
  given cluster);
- procs: the controllers as processes, and /proc figures;
- measure: audit-log windows, samplers, rates and slopes;
- scenarios: the seven scenarios; results: their rows and curves;
- report: the table (text, JSON); plot: PNGs (matplotlib, the `lab` extra);
- run: the command.
"""

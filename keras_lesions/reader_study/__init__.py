"""The expert reader study of Frid-Adar et al. 2018 (§4.4, Table 4).

Radiologists are shown real and synthetic lesion ROIs in a random order
and asked, for each, its class and whether it is real. Three modules, the
dependencies flowing one way:

- ``study``: the study database (standard-library sqlite3). Making a study
  from a real and a synthetic dataset, readers and their fixed orders, and
  saving each answer in a transaction of its own, validated.
- ``app``: the local web application (Flask) a reader answers in, with the
  keyboard; it only calls ``study``.
- ``table4``: Table 4 from a study database, and the agreement between
  readers (Cohen's kappa).
"""

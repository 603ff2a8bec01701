"""Onboarding a host: pure install plans (toolkit, engine), the setup checklist, the doctor.

Everything here but the ``gather``/``apply`` functions is pure: it takes facts about a host
(its ``/etc/os-release``, its architecture, what ``docker info`` said) and returns plans,
findings or tables, so each distribution family is unit-tested without that distribution.
"""

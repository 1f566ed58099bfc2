"""An honest simulator of Claude Enterprise organizations, with labelled attacks.

The ordinary traffic is modelled on how organizations work (people, devices, addresses,
office hours, routine administration), never on what a detection rule checks, so a rule's
alerts on it are a fair measure of its noise. Attacks are mixed in and labelled in a
separate file. Modules: `world` (orgs, people, devices, addresses), `rhythm` (when
people work), `routine` (people's day), `adminwork` (administration), `machines` (SIEM,
eDiscovery, automation), `attacks`, `labels`, `wire` (ids, timestamps, actors),
`simulate` (the day loop and writer). See docs/simulator.md.
"""

from engine.orgsim.simulate import Simulation, write_jsonl

__all__ = ["Simulation", "write_jsonl"]

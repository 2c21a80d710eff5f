"""The pure domain: the dispatch policy, its simulation in virtual time, and capacity planning.

Plain Python with no Django import (an import-linter contract keeps it so): the conductor, the
benchmarks and the planner run the very same functions.
"""

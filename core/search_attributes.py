"""Search attributes the workflow sets, so one Temporal UI filter lists a graph's nodes
(`DagoGraphId = "g-1"`) or every failed agent node (`DagoMode = "agent" AND DagoOutcome = "failed"`).
Their names live here; whether a namespace has them registered is asked in
adapters/search_attributes.py.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

GRAPH_ID = SearchAttributeKey.for_keyword("DagoGraphId")
NODE_ID = SearchAttributeKey.for_keyword("DagoNodeId")
MODE = SearchAttributeKey.for_keyword("DagoMode")
MODEL = SearchAttributeKey.for_keyword("DagoModel")
OUTCOME = SearchAttributeKey.for_keyword("DagoOutcome")
ALL = (GRAPH_ID, NODE_ID, MODE, MODEL, OUTCOME)

"""Ray's fake multi-node provider, its head node tagged with the config's head node type.

Ray's ``FakeMultiNodeProvider`` tags its head ``ray.head.default`` whatever the
config calls it; the autoscaler then finds no such type and launches "head"
workers. This subclass reads the name from ``provider.head_node_type`` so the
fake cluster keeps ``cluster.yaml``'s names. The monitor imports it through
``provider: {type: external, module: fake_provider.NamedHeadFakeProvider}``.
"""

from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE


class NamedHeadFakeProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self._nodes[self._head_node_id]["tags"][TAG_RAY_USER_NODE_TYPE] = provider_config["head_node_type"]

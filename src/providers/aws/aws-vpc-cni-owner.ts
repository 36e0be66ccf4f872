// ENIs created by the AWS VPC CNI (aws-node's ipamd), recognised so that vpc-ipamd can adopt them
// when it takes a node over, and the janitor can clean the ones aws-node leaked. aws-node marks
// every ENI it creates with a description and tags (the AWS repo's pkg/awsutils):
//   Description  "aws-K8S-<instance id>"
//   node.k8s.amazonaws.com/instance_id = <instance id>
//   node.k8s.amazonaws.com/createdAt   = RFC 3339 time of creation
//   cluster.k8s.amazonaws.com/name     = CLUSTER_NAME (only when aws-node had it set)
// All three of description, instance tag and cluster tag must agree before an ENI counts as one
// aws-node made for this cluster: an ENI without the cluster tag cannot be attributed and is left
// alone (the same rule as for our own tags). Pure.

import type { ForeignOwner } from '../types.ts';

export const AWS_VPC_CNI_TAGS = {
  instanceId: 'node.k8s.amazonaws.com/instance_id',
  createdAt: 'node.k8s.amazonaws.com/createdAt',
  clusterName: 'cluster.k8s.amazonaws.com/name',
} as const;

export const AWS_VPC_CNI_DESCRIPTION_PREFIX = 'aws-K8S-';

/** The AWS VPC CNI's ownership of an ENI, from its description and tags; null when not (fully) its. */
export function awsVpcCniOwner(
  description: string | undefined,
  tags: Readonly<Record<string, string>>,
): ForeignOwner | null {
  const instanceId = tags[AWS_VPC_CNI_TAGS.instanceId];
  const clusterName = tags[AWS_VPC_CNI_TAGS.clusterName];
  if (!instanceId || !clusterName) return null;
  if (description !== `${AWS_VPC_CNI_DESCRIPTION_PREFIX}${instanceId}`) return null;
  const owner: ForeignOwner = { tool: 'aws-vpc-cni', instanceId, clusterName };
  const created = tags[AWS_VPC_CNI_TAGS.createdAt] ? new Date(tags[AWS_VPC_CNI_TAGS.createdAt]!) : undefined;
  if (created && !Number.isNaN(created.getTime())) owner.createdAt = created;
  return owner;
}

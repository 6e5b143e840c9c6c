import type { DescribeResponse__Output } from '../protos/generated/pipeserve/v1/DescribeResponse';
import { callOptions, createClient, requestMetadata, unary } from '../shared/grpc/channel';
import { protos } from '../shared/grpc/proto-loader';

const DESCRIBE_DEADLINE_MS = 2_000;

/** A node's Describe answer (KV use, layers), through a client of its own. */
export async function describeNode(address: string): Promise<DescribeResponse__Output> {
  const client = createClient(protos().node.pipeserve.v1.ModelNode, address);
  try {
    return await unary((request, metadata, options, callback) => client.Describe(request, metadata, options, callback), {}, requestMetadata(''), callOptions(DESCRIBE_DEADLINE_MS));
  } finally {
    client.close();
  }
}

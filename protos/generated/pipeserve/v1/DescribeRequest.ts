// Original file: protos/node.proto


export interface DescribeRequest {
}

export interface DescribeRequest__Output {
}

// Original file: protos/coordinator.proto


export interface TopologyRequest {
}

export interface TopologyRequest__Output {
}

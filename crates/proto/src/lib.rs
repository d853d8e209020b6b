//! placeholder
tonic::include_proto!("mailraft.v1");

//! A fleet of replicas that behaves as one, over the Redis / ElastiCache the deployment has
//! anyway: batch legs and chunks computed once for the whole fleet and shared (`shared`,
//! stored as `codec` writes them), and the leases that make one replica compute a leg while
//! the others wait for it, and cancels relayed to the replica that runs the statement
//! (`relay`). Without Redis every replica works alone, and answers stay exact.

pub mod codec;
pub mod relay;
pub mod shared;

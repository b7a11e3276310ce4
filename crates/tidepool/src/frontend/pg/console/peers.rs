//! The console's `SHOW PEERS`: the live members of the `[cluster]` as this node saw them at its
//! last heartbeat (none without a cluster), and whether each is this node.

use bytes::BytesMut;
use tidepool_proto::backend;

use crate::app::App;

const TEXT: u32 = 25;

pub fn show(app: &App, out: &mut BytesMut) {
    backend::row_description(out, &[("node_id", TEXT), ("advertise_addr", TEXT), ("self", TEXT), ("budget", TEXT)]);
    if let Some(c) = &app.cluster {
        let mode = if c.coordinated() { "coordinated" } else { "static share" };
        for p in c.peers() {
            let me = p.node_id == c.node_id();
            let addr = (!p.advertise_addr.is_empty()).then_some(p.advertise_addr.as_str());
            backend::data_row(out, &[Some(p.node_id.as_str()), addr, Some(if me { "yes" } else { "no" }), me.then_some(mode)]);
        }
    }
    backend::command_complete(out, "SHOW");
}

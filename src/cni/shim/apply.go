// The plan executor: applies the wiring the daemon computed (src/cni/wiring/net-ops.ts NetPlan)
// with netlink, in this process, so an ADD or DEL forks no `ip`/`nsenter`. Generic on purpose: it
// knows nine kinds of kernel change and one precondition, and nothing about CNI; the daemon
// decides what to change, checks the result and rolls back on failure. It stops at the first
// failing op and names it. The deletions succeed when the thing is already gone (a DEL is
// idempotent). It reports the ifindex of each link a routeDel named that exists (a DEL that leaves
// the veth: the daemon's sweep deletes only that very link, never a new one of the same name).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

type netOp struct {
	Op string `json:"op"`
	// veth
	Name      string `json:"name"`
	Mac       string `json:"mac"`
	Mtu       int    `json:"mtu"`
	Peer      string `json:"peer"`
	PeerMac   string `json:"peerMac"`
	PeerNetns string `json:"peerNetns"`
	// up, addr, route, neigh, linkDel, routeDel
	Dev  string `json:"dev"`
	Cidr string `json:"cidr"`
	// route, routeDel
	Dst       string `json:"dst"`
	Via       string `json:"via"`
	ScopeLink bool   `json:"scopeLink"`
	Proto     int    `json:"proto"`
	Replace   bool   `json:"replace"`
	// rule, ruleDel (table 0: any)
	From     string `json:"from"`
	To       string `json:"to"`
	Table    int    `json:"table"`
	Priority int    `json:"priority"`
	// neigh
	IP string `json:"ip"`
}

type netPlan struct {
	Steps []struct {
		Netns string `json:"netns"`
		// The step runs only while the main table's route to Dst is absent or goes out one of Devs.
		OnlyIfRoute *struct {
			Dst  string   `json:"dst"`
			Devs []string `json:"devs"`
		} `json:"onlyIfRoute"`
		Ops []netOp `json:"ops"`
	} `json:"steps"`
}

// namespaces opens each network namespace once, with one netlink handle in it.
type namespaces struct {
	fds     map[string]netns.NsHandle
	handles map[string]*netlink.Handle
	// links: name -> ifindex of the links routeDel ops named (reported to the daemon)
	links map[string]int
}

func (n *namespaces) fd(path string) (netns.NsHandle, error) {
	if fd, ok := n.fds[path]; ok {
		return fd, nil
	}
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return 0, fmt.Errorf("open netns %s: %w", path, err)
	}
	n.fds[path] = fd
	return fd, nil
}

// handle: "" is our own (the node's) namespace.
func (n *namespaces) handle(path string) (*netlink.Handle, error) {
	if h, ok := n.handles[path]; ok {
		return h, nil
	}
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var fd netns.NsHandle
		if fd, err = n.fd(path); err == nil {
			h, err = netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("netlink in netns %q: %w", path, err)
	}
	n.handles[path] = h
	return h, nil
}

func (n *namespaces) close() {
	for _, h := range n.handles {
		h.Close()
	}
	for _, fd := range n.fds {
		fd.Close()
	}
}

// applyPlan applies every op in order; the error names the first op that failed. links: the
// ifindex of each link a routeDel named that exists.
func applyPlan(raw json.RawMessage) (links map[string]int, err error) {
	var plan netPlan
	if err := json.Unmarshal(raw, &plan); err != nil {
		return nil, fmt.Errorf("cannot read the plan: %v", err)
	}
	ns := &namespaces{fds: map[string]netns.NsHandle{}, handles: map[string]*netlink.Handle{}, links: map[string]int{}}
	defer ns.close()
	for i, step := range plan.Steps {
		h, err := ns.handle(step.Netns)
		if err != nil {
			return ns.links, err
		}
		if g := step.OnlyIfRoute; g != nil {
			run, err := routeAbsentOrVia(h, g.Dst, g.Devs)
			if err != nil {
				return ns.links, fmt.Errorf("step %d onlyIfRoute %s: %v", i, g.Dst, err)
			}
			if !run {
				continue
			}
		}
		for j, op := range step.Ops {
			if err := applyOp(h, ns, op); err != nil {
				desc, _ := json.Marshal(op)
				return ns.links, fmt.Errorf("step %d op %d %s: %v", i, j, opSummary(op, desc), err)
			}
		}
	}
	return ns.links, nil
}

func opSummary(op netOp, desc []byte) string {
	if len(desc) > 300 {
		desc = desc[:300]
	}
	return fmt.Sprintf("%s %s", op.Op, desc)
}

func applyOp(h *netlink.Handle, ns *namespaces, o netOp) error {
	switch o.Op {
	case "veth":
		mac, err1 := net.ParseMAC(o.Mac)
		peerMac, err2 := net.ParseMAC(o.PeerMac)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bad MAC %q/%q", o.Mac, o.PeerMac)
		}
		peerNs, err := ns.fd(o.PeerNetns)
		if err != nil {
			return err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.HardwareAddr, attrs.MTU = o.Name, mac, o.Mtu
		return h.LinkAdd(&netlink.Veth{
			LinkAttrs: attrs, PeerName: o.Peer, PeerHardwareAddr: peerMac, PeerMTU: uint32(o.Mtu),
			PeerTxQLen: -1, PeerNamespace: netlink.NsFd(peerNs),
		})
	case "up":
		link, err := h.LinkByName(o.Dev)
		if err != nil {
			return err
		}
		return h.LinkSetUp(link)
	case "addr":
		link, err := h.LinkByName(o.Dev)
		if err != nil {
			return err
		}
		addr, err := netlink.ParseAddr(o.Cidr)
		if err != nil {
			return err
		}
		return h.AddrAdd(link, addr)
	case "route":
		return route(h, o)
	case "rule", "ruleDel":
		rule := netlink.NewRule()
		rule.Family, rule.Table, rule.Priority, rule.Protocol = unix.AF_INET, o.Table, o.Priority, uint8(o.Proto)
		cidr := o.To
		if o.From != "" {
			cidr = o.From
		}
		_, ipnet, err := net.ParseCIDR(cidr)
		if err != nil {
			return err
		}
		if o.From != "" {
			rule.Src = ipnet
		} else {
			rule.Dst = ipnet
		}
		if o.Op == "rule" {
			return h.RuleAdd(rule)
		}
		if err := h.RuleDel(rule); !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	case "linkDel":
		link, err := h.LinkByName(o.Dev)
		if err == nil {
			err = h.LinkDel(link)
		}
		var gone netlink.LinkNotFoundError
		if errors.As(err, &gone) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return err
	case "routeDel":
		return routeDel(h, ns, o)
	case "neigh":
		link, err := h.LinkByName(o.Dev)
		if err != nil {
			return err
		}
		mac, err := net.ParseMAC(o.Mac)
		ip := net.ParseIP(o.IP)
		if err != nil || ip == nil {
			return fmt.Errorf("bad neighbour %q/%q", o.IP, o.Mac)
		}
		return h.NeighAdd(&netlink.Neigh{
			LinkIndex: link.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: ip, HardwareAddr: mac,
		})
	}
	return fmt.Errorf("unknown op %q", o.Op)
}

// routeDel deletes the main table's route to o.Dst through o.Dev; none, or no such link: done.
func routeDel(h *netlink.Handle, ns *namespaces, o netOp) error {
	link, err := h.LinkByName(o.Dev)
	var gone netlink.LinkNotFoundError
	if errors.As(err, &gone) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	if err != nil {
		return err
	}
	ns.links[o.Dev] = link.Attrs().Index
	_, dst, err := net.ParseCIDR(o.Dst)
	if err != nil {
		return err
	}
	// Scope nowhere matches any scope (the host route is scope link); 0 would match only universe.
	err = h.RouteDel(&netlink.Route{
		LinkIndex: link.Attrs().Index, Dst: dst, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_NOWHERE,
	})
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// routeAbsentOrVia: true while no main-table route to dst exists, or each goes out one of devs.
func routeAbsentOrVia(h *netlink.Handle, dst string, devs []string) (bool, error) {
	_, ipnet, err := net.ParseCIDR(dst)
	if err != nil {
		return false, err
	}
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: ipnet, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return false, err
	}
	for _, r := range routes {
		link, err := h.LinkByIndex(r.LinkIndex)
		if err != nil || !slices.Contains(devs, link.Attrs().Name) {
			return false, nil
		}
	}
	return true, nil
}

func route(h *netlink.Handle, o netOp) error {
	link, err := h.LinkByName(o.Dev)
	if err != nil {
		return err
	}
	_, dst, err := net.ParseCIDR(o.Dst)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: netlink.RouteProtocol(o.Proto)}
	if ones, _ := dst.Mask.Size(); ones > 0 {
		r.Dst = dst // else the default route
	}
	if o.Via != "" {
		if r.Gw = net.ParseIP(o.Via); r.Gw == nil {
			return fmt.Errorf("bad gateway %q", o.Via)
		}
	}
	if o.ScopeLink {
		r.Scope = netlink.SCOPE_LINK
	}
	if o.Replace {
		return h.RouteReplace(r)
	}
	return h.RouteAdd(r)
}

module vpc-ipam/cni-shim

go 1.26

module github.com/poc-go-micro/poc-go-micro

go 1.26

require (
	github.com/golang/protobuf v1.4.2
	github.com/micro/go-micro/v2 v2.9.1
	google.golang.org/protobuf v1.23.0
)

require (
	github.com/google/uuid v1.1.1 // indirect
	github.com/miekg/dns v1.1.27 // indirect
	github.com/oxtoacart/bpool v0.0.0-20190530202638-03653db5a59c // indirect
	github.com/patrickmn/go-cache v2.1.0+incompatible // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/crypto v0.0.0-20200510223506-06a226fb4e37 // indirect
	golang.org/x/net v0.0.0-20200520182314-0ba52f642ac2 // indirect
	golang.org/x/sys v0.0.0-20200523222454-059865788121 // indirect
	golang.org/x/text v0.3.2 // indirect
)

// The etcd v3.3 client inside go-micro v2 does not compile against grpc >= 1.27 (resolver.BuildOption, balancer.PickOptions).
replace google.golang.org/grpc => google.golang.org/grpc v1.26.0

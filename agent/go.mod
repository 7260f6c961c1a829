module github.com/tawsil/tawsil/agent

go 1.26.8

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3
	github.com/tawsil/tawsil/shared v0.0.0
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sync v0.20.0
	golang.org/x/text v0.29.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/rs/xid v1.4.0 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)

replace github.com/tawsil/tawsil/shared => ../shared

-- wrk script: every request a distinct OrderWrittenSale envelope, so none is a duplicate.
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("prefix", tostring(thread_count))
end

local counter = 0

function request()
  counter = counter + 1
  local body = string.format(
    '{"environment":"Production","eventType":"OrderWrittenSale","clientCode":"BENCH","accountName":"demo",' ..
    '"data":[{"entityId":"%s-%d"}]}', prefix or "0", counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Webhook-Secret"] = "bench-secret"}, body)
end

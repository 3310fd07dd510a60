-- PUT a 100-byte value under one of 100 000 keys, chosen at random. The requests are formatted
-- once at start (20 000 of them, used in turn), so wrk spends its CPU sending, not formatting.
local body = string.rep("v", 100)
math.randomseed(os.time())
local requests, n, i = {}, 20000, 0
for j = 1, n do
  requests[j] = wrk.format("PUT", "/v1/kv/bench/" .. math.random(1, 100000), nil, body)
end
request = function()
  i = i % n + 1
  return requests[i]
end

-- PUT a 100-byte value under one of 100 000 keys, chosen at random per request.
local body = string.rep("v", 100)
math.randomseed(os.time())
request = function()
  return wrk.format("PUT", "/v1/kv/bench/" .. math.random(1, 100000), nil, body)
end
